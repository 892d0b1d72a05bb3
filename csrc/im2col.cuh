// im2col.cuh: unfold receptive fields into columns (im2col) and fold them back (col2im).
// Convolution becomes a GEMM: y (O, OH*OW) = w (O, C*kh*kw) @ cols (C*kh*kw, OH*OW) per image.
#pragma once
#include "common.cuh"

// x: (N, C, H, W)  ->  cols: (N, C*kh*kw, OH*OW), rows ordered (c, ki, kj).
// One thread per entry of cols; padding reads as 0.
template <typename T>
MC_KERNEL im2col(mc_index count, const T* x, T* cols, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index ph, mc_index pw,
                 mc_index OH, mc_index OW) {
    (void)C;   // same geometry arguments as col2im; here the plane n*C + c is used whole
    // each i is one column entry (n, c, ki, kj, oy, ox) in row-major order
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW;
        mc_index oy = (i / OW) % OH;
        mc_index kj = (i / (OW * OH)) % kw;
        mc_index ki = (i / (OW * OH * kw)) % kh;
        mc_index plane = i / (OW * OH * kw * kh);   // n * C + c
        mc_index y = oy * sh - ph + ki;             // the input pixel this entry copies
        mc_index xx = ox * sw - pw + kj;
        bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
        cols[i] = inside ? x[(plane * H + y) * W + xx] : T(0);
    }
}

// cols: (N, C*kh*kw, OH*OW)  ->  x: (N, C, H, W), the adjoint of im2col:
// x[pixel] = sum of every column entry that copied that pixel.
// One thread per input pixel GATHERS its entries (no atomics, so the sum order is
// fixed: kernel offsets (ki, kj) in row-major order, as the NumPy reference adds them).
template <typename T>
MC_KERNEL col2im(mc_index count, const T* cols, T* x, mc_index C, mc_index H, mc_index W,
                 mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index ph, mc_index pw,
                 mc_index OH, mc_index OW) {
    // each i is one input pixel (n, c, y, x)
    MC_GRID_LOOP(i, count) {
        mc_index xx = i % W;
        mc_index y = (i / W) % H;
        mc_index plane = i / (W * H);               // n * C + c
        mc_index n = plane / C, c = plane % C;
        T sum = T(0);
        // each kernel offset (ki, kj) names at most one output (oy, ox) that read this pixel
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index ty = y + ph - ki;              // = oy * sh when an output used this offset
            if (ty < 0 || ty % sh != 0 || ty / sh >= OH) continue;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index tx = xx + pw - kj;
                if (tx < 0 || tx % sw != 0 || tx / sw >= OW) continue;
                mc_index row = (c * kh + ki) * kw + kj;
                sum += cols[((n * C * kh * kw + row) * OH + ty / sh) * OW + tx / sw];
            }
        }
        x[i] = sum;
    }
}
