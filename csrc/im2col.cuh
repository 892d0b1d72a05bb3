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
// One thread per (c, n, oy, ox), as Caffe's im2col_gpu_kernel: it copies its
// kh*kw window into the kh*kw rows of its column; padding reads as 0.
template <typename T>
MC_KERNEL im2col(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                 mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each i is one column (c, n, oy, ox); neighbouring threads write neighbouring entries
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW, rest = i / OW;
        mc_index oy = rest % OH;
        rest /= OH;
        mc_index n = rest % N, c = rest / N;
        const T* plane = x + (n * C + c) * H * W;
        T* out = cols + c * kh * kw * NL + n * L + oy * OW + ox;   // row (c, 0, 0) of the column
        // walk the window row by row; each tap goes one row (NL entries) further down
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index y = oy * sh - pt + ki * dh;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index xx = ox * sw - pl + kj * dw;
                bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
                *out = inside ? plane[y * W + xx] : T(0);
                out += NL;
            }
        }
    }
}

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W), the adjoint of im2col:
// x[pixel] = the sum of every column entry that copied that pixel.
// One thread per input pixel GATHERS them, as Caffe's col2im_gpu_kernel: no atomics,
// and a fixed sum order - taps (ki, kj) in row-major order, as the NumPy reference adds them.
template <typename T>
MC_KERNEL col2im(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                 mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each i is one input pixel (n, c, y, xx)
    MC_GRID_LOOP(i, count) {
        mc_index xx = i % W, rest = i / W;
        mc_index y = rest % H;
        rest /= H;
        mc_index c = rest % C, n = rest / C;
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
        x[i] = sum;
    }
}

// The GEMM gives y with the batch side by side, (O, N, OH*OW); the network wants NCHW.
// y_side: (O, N, L), b: (O,)  ->  y: (N, O, L), y[n, o, l] = y_side[o, n, l] + b[o].
// One thread per entry of y (the bias is added on the way: one pass instead of two).
template <typename T>
MC_KERNEL side_by_side_to_nchw(mc_index count, const T* y_side, const T* b, T* y, mc_index N, mc_index O,
                               mc_index L) {
    // each i is one entry (n, o, l) of y
    MC_GRID_LOOP(i, count) {
        mc_index l = i % L, rest = i / L;
        mc_index o = rest % O, n = rest / O;
        y[i] = y_side[(o * N + n) * L + l] + b[o];
    }
}

// The way back, for the gradients' GEMMs: dy: (N, O, L)  ->  dy_side: (O, N, L).
// One thread per entry of dy_side.
template <typename T>
MC_KERNEL nchw_to_side_by_side(mc_index count, const T* dy, T* dy_side, mc_index N, mc_index O, mc_index L) {
    // each i is one entry (o, n, l) of dy_side
    MC_GRID_LOOP(i, count) {
        mc_index l = i % L, rest = i / L;
        mc_index n = rest % N, o = rest / N;
        dy_side[i] = dy[(n * O + o) * L + l];
    }
}
