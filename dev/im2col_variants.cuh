// im2col_variants.cuh: numbered versions of im2col and col2im, for dev/im2col.py.
//
// Every variant has the signature and the column layout of csrc/im2col.cuh's kernels
// (cols: (C*kh*kw, N, OH*OW), rows (c, ki, kj), columns (n, oy, ox); padding before
// the first row/column pt/pl; dilation dh/dw), so each can stand in for the others,
// and dev/im2col.py checks each against the NumPy reference before it times it.
//
//   1  the first kernels: im2col with one thread per ENTRY of cols, which decodes
//      (c, ki, kj, n, oy, ox) from its index by a chain of six 64-bit divisions;
//      col2im with one thread per pixel that tries all kh*kw taps and asks, with
//      a modulo each, whether some output used it
//   2  Caffe's shape, the one csrc/im2col.cuh ships: im2col with one thread per
//      (c, n, oy, ox) that copies its whole kh*kw window (the divisions paid once
//      per window), col2im gathering only over the outputs whose window spans the pixel
#pragma once
#include "im2col.cuh"

// ----- variant 1
// x: (N, C, H, W)  ->  cols: (C*kh*kw, N, OH*OW). One thread per entry of cols.
template <typename T>
MC_KERNEL im2col_1(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW;
    // each i is one entry (c, ki, kj, n, oy, ox) of cols, in row-major order
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW;
        mc_index oy = (i / OW) % OH;
        mc_index n = (i / L) % N;
        mc_index kj = (i / (L * N)) % kw;
        mc_index ki = (i / (L * N * kw)) % kh;
        mc_index c = i / (L * N * kw * kh);
        mc_index y = oy * sh - pt + ki * dh;          // the input pixel this entry copies
        mc_index xx = ox * sw - pl + kj * dw;
        bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
        cols[i] = inside ? x[((n * C + c) * H + y) * W + xx] : T(0);
    }
}

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W). One thread per input pixel, gathering.
template <typename T>
MC_KERNEL col2im_1(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW;
    // each i is one input pixel (n, c, y, xx)
    MC_GRID_LOOP(i, count) {
        mc_index xx = i % W;
        mc_index y = (i / W) % H;
        mc_index c = (i / (W * H)) % C;
        mc_index n = i / (W * H * C);
        T sum = T(0);
        // each tap (ki, kj) names at most one output (oy, ox) that read this pixel
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index ty = y + pt - ki * dh;           // = oy * sh when an output used this tap
            if (ty < 0 || ty % sh != 0 || ty / sh >= OH) continue;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index tx = xx + pl - kj * dw;
                if (tx < 0 || tx % sw != 0 || tx / sw >= OW) continue;
                mc_index row = (c * kh + ki) * kw + kj;
                sum += cols[(row * N + n) * L + (ty / sh) * OW + tx / sw];
            }
        }
        x[i] = sum;
    }
}

// ----- variant 2 is csrc/im2col.cuh's im2col and col2im, included above.
