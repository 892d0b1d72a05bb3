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

// Along one axis: the outputs o (0 <= o < out) whose tap reads position o*s + shift inside the
// input [0, size): first <= o < end (a ceiling division at each end).
MC_HD void mc_outputs_inside(mc_index shift, mc_index s, mc_index size, mc_index out, mc_index* first,
                             mc_index* end) {
    *first = shift >= 0 ? 0 : (-shift + s - 1) / s;
    *end = size - shift <= 0 ? 0 : (size - shift + s - 1) / s;
    if (*end > out) *end = out;
    if (*first > *end) *first = *end;
}

// x: (N, C, H, W)  ->  cols: (C*kh*kw, N, OH*OW), rows ordered (c, ki, kj).
// In MC_PLANE_LOOP (common.cuh): a plane is image n's OH x OW block of entries in row
// (c, ki, kj) of cols, so count = C*kh*kw*N and entry (plane, oy, ox) of cols is
// (plane * OH + oy) * OW + ox. On the GPU each entry is a thread (neighbouring threads write
// neighbouring entries); on the host a thread decodes a plane once and copies along its rows.
// Padding reads as 0.
template <typename T>
MC_KERNEL im2col(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                 mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    // each (plane, oy, ox) is one entry (c, ki, kj, n, oy, ox) of cols
    MC_PLANE_LOOP(plane, count, oy, OH, ox, OW) {
        mc_index n = plane % N, rest = plane / N;
        mc_index kj = rest % kw;
        rest /= kw;
        mc_index ki = rest % kh, c = rest / kh;
        mc_index y = oy * sh - pt + ki * dh;              // the input pixel this entry copies
        mc_index xx = ox * sw - pl + kj * dw;
        bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
        cols[(plane * OH + oy) * OW + ox] = inside ? x[((n * C + c) * H + y) * W + xx] : T(0);
    }
}

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W), the adjoint of im2col:
// x[pixel] = the sum of every column entry that copied that pixel.
// One index per INPUT ROW (n, c, y), count = N*C*H: it owns that row of x and collects into
// it, tap by tap (ki, kj) in row-major order, the entries of the output row that read the row
// through that tap: along the row, the run of entries ox whose tap lands inside it. So each
// pixel is summed by one index, taps in row-major order as the NumPy reference adds them: no
// atomics, the same bits every run (a scatter over windows, dev/im2col.py's variant 3, needs
// atomics and loses both). No division per pixel, and with stride 1 the inner loop adds one
// contiguous run to another. On a GPU this is one thread per input row (N*C*H of them).
template <typename T>
MC_KERNEL col2im(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                 mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each i is one input row (n, c, y): i = (n*C + c)*H + y
    MC_GRID_LOOP(i, count) {
        mc_index y = i % H, plane = i / H;
        mc_index c = plane % C, n = plane / C;
        T* row = x + i * W;
        for (mc_index xx = 0; xx < W; ++xx) row[xx] = T(0);
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index t = y + pt - ki * dh;                   // = oy * sh for the output row that used tap ki
            if (t < 0 || t % sh != 0 || t / sh >= OH) continue;
            mc_index oy = t / sh;
            for (mc_index kj = 0; kj < kw; ++kj) {
                const T* entries = cols + ((c * kh + ki) * kw + kj) * NL + n * L + oy * OW;
                // output ox's tap kj reads column ox*sw + shift: those inside the row, ox0 <= ox < ox1
                mc_index shift = kj * dw - pl, ox0, ox1;
                mc_outputs_inside(shift, sw, W, OW, &ox0, &ox1);
                for (mc_index ox = ox0; ox < ox1; ++ox) row[ox * sw + shift] += entries[ox];
            }
        }
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
