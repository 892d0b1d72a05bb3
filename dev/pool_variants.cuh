// pool_variants.cuh: numbered versions of max pooling forward and backward, for dev/pool.py.
//
// Every variant has the signature of csrc/pool.cuh's max pooling kernels (x, dx: (N, C, H, W);
// y, argmax, dy: (N, C, OH, OW); argmax the flat index y*W + x of each window's winner in its
// plane), so each can stand in for the others, and dev/pool.py checks each against the NumPy
// reference before it times it. Only the count differs: it is what the variant's indices are.
//
//   1  the first kernels: forward one thread per output; backward one thread per input pixel,
//      which finds the outputs whose windows cover it (two divisions by the stride per axis)
//      and adds the gradient of those whose argmax names it
//   2  both in MC_ROW_LOOP (csrc/common.cuh). Forward (csrc/pool.cuh's): a row is one output
//      row (count = N*C*OH), each window clipped to the image once instead of tested at
//      every tap. Backward: a row is one input row (count = N*C*H), each pixel gathering as
//      in 1. On the GPU one thread per element, as 1; on the host the rows' divisions once
//      per row (the stride's divisions per pixel remain)
//   3  the kernels csrc/pool.cuh ships: forward as 2; backward with one index per INPUT
//      ROW that collects into its row: it
//      walks the output rows whose windows reach its row and, for each output, adds dy to
//      the pixel its argmax names when that pixel lies in its row. No division per pixel,
//      and each output's argmax and dy are read once per covering row instead of once per
//      covered pixel. Every pixel of the row is summed by this one index, in the outputs'
//      row-major order (the reference's), so the result is the same bits, every run. On a
//      GPU this is one thread per input row (N*C*H threads, a few hundred thousand for
//      AlexNet's batch of 128), each reading one or two whole output rows.
#pragma once
#include "pool.cuh"

// ----- variant 1: the first kernels (csrc/pool.cuh until variant 3 replaced them)
// x: (N, C, H, W)  ->  y, argmax: (N, C, OH, OW).
// argmax = flat index y*W + x of the winner inside its (n, c) plane.
// One thread per output. Padding never wins: it is skipped, as if it held -inf.
// Ties go to the first maximum in row-major window order (strict >).
template <typename T>
MC_KERNEL max_pool_forward_1(mc_index count, const T* x, T* y, mc_index* argmax,
                             mc_index H, mc_index W, mc_index kh, mc_index kw, mc_index sh,
                             mc_index sw, mc_index ph, mc_index pw, mc_index OH, mc_index OW) {
    // each i is one output (n, c, oy, ox)
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW, rest = i / OW;
        mc_index oy = rest % OH, plane = rest / OH;
        const T* xp = x + plane * H * W;
        T best = mc_neg_inf<T>();
        mc_index best_at = 0;
        // walk the window row by row, clipped to the image
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index yy = oy * sh - ph + ki;
            if (yy < 0 || yy >= H) continue;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index xx = ox * sw - pw + kj;
                if (xx < 0 || xx >= W) continue;
                // a select, not a branch: on random data a branch is mispredicted half the time
                T value = xp[yy * W + xx];
                bool better = value > best;
                best_at = better ? yy * W + xx : best_at;
                best = better ? value : best;
            }
        }
        y[i] = best;
        argmax[i] = best_at;
    }
}

// dy, argmax: (N, C, OH, OW)  ->  dx: (N, C, H, W).
// One thread per INPUT pixel gathers dy from every output whose window covers it
// and whose argmax names it (Caffe's MaxPoolBackward): no atomics, even where
// overlapping windows (AlexNet's 3x3 stride 2) pick the same pixel twice.
template <typename T>
MC_KERNEL max_pool_backward_1(mc_index count, const T* dy, const mc_index* argmax, T* dx,
                              mc_index H, mc_index W, mc_index kh, mc_index kw, mc_index sh,
                              mc_index sw, mc_index ph, mc_index pw, mc_index OH, mc_index OW) {
    // each i is one input pixel (n, c, y, x)
    MC_GRID_LOOP(i, count) {
        mc_index xx = i % W, rest = i / W;
        mc_index yy = rest % H, plane = rest / H;
        mc_index oy0, oy1, ox0, ox1;
        mc_covering_outputs(yy, kh, sh, ph, OH, &oy0, &oy1);
        mc_covering_outputs(xx, kw, sw, pw, OW, &ox0, &ox1);
        T sum = T(0);
        // visit those outputs in row-major order, as the reference adds them
        for (mc_index oy = oy0; oy < oy1; ++oy) {
            for (mc_index ox = ox0; ox < ox1; ++ox) {
                mc_index o = (plane * OH + oy) * OW + ox;
                sum += argmax[o] == yy * W + xx ? dy[o] : T(0);   // adding +0 changes no sum
            }
        }
        dx[i] = sum;
    }
}

// ----- variant 2: its forward is csrc/pool.cuh's (variant 3's); the backward in MC_ROW_LOOP
template <typename T>
MC_KERNEL max_pool_backward_2(mc_index count, const T* dy, const mc_index* argmax, T* dx,
                              mc_index H, mc_index W, mc_index kh, mc_index kw, mc_index sh,
                              mc_index sw, mc_index ph, mc_index pw, mc_index OH, mc_index OW) {
    // each (row, xx) is one input pixel (n, c, yy, xx); row = (n*C + c)*H + yy
    MC_ROW_LOOP(row, count, xx, W) {
        mc_index yy = row % H, plane = row / H;
        mc_index oy0, oy1, ox0, ox1;
        mc_covering_outputs(yy, kh, sh, ph, OH, &oy0, &oy1);
        mc_covering_outputs(xx, kw, sw, pw, OW, &ox0, &ox1);
        T sum = T(0);
        for (mc_index oy = oy0; oy < oy1; ++oy) {
            for (mc_index ox = ox0; ox < ox1; ++ox) {
                mc_index o = (plane * OH + oy) * OW + ox;
                sum += argmax[o] == yy * W + xx ? dy[o] : T(0);
            }
        }
        dx[row * W + xx] = sum;
    }
}

// ----- variant 3 is csrc/pool.cuh's max_pool_forward (variant 2's) and max_pool_backward, included
// above.
