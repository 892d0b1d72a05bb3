// im2col.cuh: unfold receptive fields into columns (im2col) and fold them back (col2im).
//
// Convolution becomes one GEMM for the whole batch,
//   y (O, N*OH*OW) = w (O, C*kh*kw) @ cols (C*kh*kw, N*OH*OW),
// so cols holds the batch's columns side by side: row (c, ki, kj), column (n, oy, ox).
// Along one axis (the other is alike), output oy reads the input rows
//   oy*sh - pt + ki*dh,  ki = 0 .. kh-1        (sh: stride, pt: padding before row 0, dh: dilation)
// and OH = floor((H + pt + pb - dh*(kh-1) - 1) / sh) + 1 (pb: padding after the last row);
// the caller computes OH and OW, so pb and pr enter only through them.
#pragma once
#include "common.cuh"

// Along one axis: the tap k of a window that lands offset t past the window's start,
// k*d == t, or -1 when t falls between two taps of a dilated window. Dilation 1, the
// common case, needs no division (an integer division costs as much as the rest of a tap).
MC_HD mc_index mc_tap(mc_index t, mc_index d) {
    if (d == 1) return t;
    return t % d == 0 ? t / d : -1;
}

// x: (N, C, H, W)  ->  cols: (C*kh*kw, N, OH*OW), rows ordered (c, ki, kj).
// In MC_ROW_LOOP (common.cuh): a row is output row oy of image n in row (c, ki, kj) of cols,
// its columns the ox, so count = C*kh*kw*N*OH and entry (row, ox) of cols is row * OW + ox.
// On the GPU each entry is a thread (neighbouring threads write neighbouring entries); on the
// host a thread decodes a row once and copies it along. Padding reads as 0.
template <typename T>
MC_KERNEL im2col(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                 mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    // each (row, ox) is one entry (c, ki, kj, n, oy, ox) of cols
    MC_ROW_LOOP(row, count, ox, OW) {
        mc_index oy = row % OH, rest = row / OH;
        mc_index n = rest % N;
        rest /= N;
        mc_index kj = rest % kw;
        rest /= kw;
        mc_index ki = rest % kh, c = rest / kh;
        mc_index y = oy * sh - pt + ki * dh;              // the input pixel this entry copies
        mc_index xx = ox * sw - pl + kj * dw;
        bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
        cols[row * OW + ox] = inside ? x[((n * C + c) * H + y) * W + xx] : T(0);
    }
}

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W), the adjoint of im2col:
// x[pixel] = the sum of every column entry that copied that pixel.
// Each pixel GATHERS them, as Caffe's col2im_gpu_kernel: no atomics, and a fixed sum
// order - taps (ki, kj) in row-major order, as the NumPy reference adds them.
// In MC_ROW_LOOP: a row is input row y of plane (n, c), its columns the pixels xx
// (count = N*C*H); the outputs covering the row are worked out once per row on the host.
template <typename T>
MC_KERNEL col2im(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                 mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each (row, xx) is one input pixel (n, c, y, xx)
    MC_ROW_LOOP(row, count, xx, W) {
        mc_index y = row % H, plane = row / H;
        mc_index c = plane % C, n = plane / C;
        // the outputs whose window (of extent d*(k-1)+1) spans this pixel, along each axis
        mc_index oy0, oy1, ox0, ox1;
        mc_covering_outputs(y, dh * (kh - 1) + 1, sh, pt, OH, &oy0, &oy1);
        mc_covering_outputs(xx, dw * (kw - 1) + 1, sw, pl, OW, &ox0, &ox1);
        const T* column = cols + c * kh * kw * NL + n * L;       // row (c, 0, 0), image n
        T sum = T(0);
        // the later the output, the earlier its tap: walk outputs backwards so that taps ascend
        for (mc_index oy = oy1 - 1; oy >= oy0; --oy) {
            mc_index ki = mc_tap(y + pt - oy * sh, dh);
            if (ki < 0) continue;                                // between two dilated taps
            for (mc_index ox = ox1 - 1; ox >= ox0; --ox) {
                mc_index kj = mc_tap(xx + pl - ox * sw, dw);
                if (kj < 0) continue;
                sum += column[(ki * kw + kj) * NL + oy * OW + ox];
            }
        }
        x[row * W + xx] = sum;
    }
}

// The GEMM gives y with the batch side by side, (O, N, OH*OW); the network wants NCHW.
// y_side: (O, N, L), b: (O,)  ->  y: (N, O, L), y[n, o, l] = y_side[o, n, l] + b[o]
// (the bias is added on the way: one pass instead of two). In MC_ROW_LOOP: a row is one
// (n, o), count = N*O; along it the L entries are contiguous on both sides.
template <typename T>
MC_KERNEL side_by_side_to_nchw(mc_index count, const T* y_side, const T* b, T* y, mc_index N, mc_index O,
                               mc_index L) {
    // each (row, l) is one entry (n, o, l) of y
    MC_ROW_LOOP(row, count, l, L) {
        mc_index o = row % O, n = row / O;
        y[row * L + l] = y_side[(o * N + n) * L + l] + b[o];
    }
}

// The way back, for the gradients' GEMMs: dy: (N, O, L)  ->  dy_side: (O, N, L).
// A row is one (o, n), count = O*N.
template <typename T>
MC_KERNEL nchw_to_side_by_side(mc_index count, const T* dy, T* dy_side, mc_index N, mc_index O, mc_index L) {
    // each (row, l) is one entry (o, n, l) of dy_side
    MC_ROW_LOOP(row, count, l, L) {
        mc_index n = row % N, o = row / N;
        dy_side[row * L + l] = dy[(n * O + o) * L + l];
    }
}
