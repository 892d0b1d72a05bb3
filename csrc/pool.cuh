// pool.cuh: max pooling (with argmax) and average pooling, forward and backward.
// Window (oy, ox) covers rows oy*sh - ph .. oy*sh - ph + kh - 1 and the same for columns,
// where ph, pw are the padding at the top and at the left. The output size OH, OW is
// worked out on the Python side (minicnn/shapes.py, pool_output_size): the padding at the
// bottom and right and ceil_mode change only how many windows there are, so the max
// pooling kernels never need them; average pooling needs them for its divisor.
#pragma once
#include "common.cuh"

// Along one axis: the positions first <= p < end of the window [start, start + k) that lie in
// the image [0, size).
MC_HD void mc_window_inside(mc_index start, mc_index k, mc_index size, mc_index* first, mc_index* end) {
    *first = start > 0 ? start : 0;
    *end = start + k < size ? start + k : size;
}

// x: (N, C, H, W)  ->  y, argmax: (N, C, OH, OW).
// argmax = flat index y*W + x of the winner inside its (n, c) plane.
// Padding never wins: the window is clipped to the image, as if padding held -inf.
// Ties go to the first maximum in row-major window order (strict >).
// In MC_ROW_LOOP: a row is one output row (n, c, oy), count = N*C*OH.
template <typename T>
MC_KERNEL max_pool_forward(mc_index count, const T* x, T* y, mc_index* argmax,
                           mc_index H, mc_index W, mc_index kh, mc_index kw, mc_index sh,
                           mc_index sw, mc_index ph, mc_index pw, mc_index OH, mc_index OW) {
    // each (row, ox) is one output (n, c, oy, ox); row = (n*C + c)*OH + oy
    MC_ROW_LOOP(row, count, ox, OW) {
        mc_index oy = row % OH, plane = row / OH;
        const T* xp = x + plane * H * W;
        // the window clipped to the image, worked out once instead of tested at every tap
        mc_index y0, y1, x0, x1;
        mc_window_inside(oy * sh - ph, kh, H, &y0, &y1);
        mc_window_inside(ox * sw - pw, kw, W, &x0, &x1);
        T best = mc_neg_inf<T>();
        mc_index best_at = 0;
        // walk the window row by row
        for (mc_index yy = y0; yy < y1; ++yy) {
            for (mc_index xx = x0; xx < x1; ++xx) {
                // a select, not a branch: on random data a branch is mispredicted half the time
                T value = xp[yy * W + xx];
                bool better = value > best;
                best_at = better ? yy * W + xx : best_at;
                best = better ? value : best;
            }
        }
        y[row * OW + ox] = best;
        argmax[row * OW + ox] = best_at;
    }
}

// dy, argmax: (N, C, OH, OW)  ->  dx: (N, C, H, W).
// One index per INPUT ROW (n, c, yy), count = N*C*H: it owns that row of dx and collects
// into it the gradient of every output whose winner lies in the row. It walks the output
// rows whose windows reach its row (the argmax and dy of each read once, along the row)
// and adds dy to the pixel the argmax names when that pixel is in its row. Every pixel is
// summed by this one index, in the outputs' row-major order (the reference's), so no
// atomics are needed, even where overlapping windows (AlexNet's 3x3 stride 2) pick the same
// pixel twice, and every run gives the same bits. No division per pixel, unlike searching
// each pixel's windows (Caffe's MaxPoolBackward; dev/pool.py's variant 1). On a GPU this is
// one thread per input row: N*C*H of them (675,840 for AlexNet's pool1 at batch 128).
template <typename T>
MC_KERNEL max_pool_backward(mc_index count, const T* dy, const mc_index* argmax, T* dx,
                            mc_index H, mc_index W, mc_index kh, mc_index kw, mc_index sh,
                            mc_index sw, mc_index ph, mc_index pw, mc_index OH, mc_index OW) {
    // each i is one input row (n, c, yy): i = (n*C + c)*H + yy
    MC_GRID_LOOP(i, count) {
        mc_index yy = i % H, plane = i / H;
        T* row = dx + i * W;
        mc_index first = yy * W;                  // the flat index of the row's first pixel in its plane
        for (mc_index xx = 0; xx < W; ++xx) row[xx] = T(0);
        mc_index oy0, oy1;
        mc_covering_outputs(yy, kh, sh, ph, OH, &oy0, &oy1);
        // the outputs whose windows reach this row, in row-major order
        for (mc_index oy = oy0; oy < oy1; ++oy) {
            const mc_index* winners = argmax + (plane * OH + oy) * OW;
            const T* grads = dy + (plane * OH + oy) * OW;
            for (mc_index ox = 0; ox < OW; ++ox) {
                mc_index at = winners[ox] - first;        // the winner's place in this row, if it is here
                if (at >= 0 && at < W) row[at] += grads[ox];
            }
        }
    }
}

// Along one axis: how many positions of the window [start, start + k) its divisor counts,
// those inside [lo, hi): the padded input [-p_begin, size + p_end) when zero padding is
// counted (count_include_pad), the input [0, size) when it is not. A ceil_mode window
// may reach past the padded input; that part never counts (PyTorch's rule).
MC_HD mc_index mc_counted(mc_index start, mc_index k, mc_index lo, mc_index hi) {
    mc_index first = start > lo ? start : lo;
    mc_index end = start + k < hi ? start + k : hi;
    return end - first;
}

// The divisor of window (oy, ox): the rows it counts times the columns it counts.
MC_HD mc_index mc_avg_pool_divisor(mc_index oy, mc_index ox, mc_index H, mc_index W, mc_index kh,
                                   mc_index kw, mc_index sh, mc_index sw, mc_index ph, mc_index pw,
                                   mc_index pad_bottom, mc_index pad_right, mc_index count_include_pad) {
    mc_index rows = count_include_pad ? mc_counted(oy * sh - ph, kh, -ph, H + pad_bottom)
                                      : mc_counted(oy * sh - ph, kh, 0, H);
    mc_index cols = count_include_pad ? mc_counted(ox * sw - pw, kw, -pw, W + pad_right)
                                      : mc_counted(ox * sw - pw, kw, 0, W);
    return rows * cols;
}

// x: (N, C, H, W)  ->  y: (N, C, OH, OW), the window mean: the sum of the window's pixels
// inside the image (padding adds 0) over mc_avg_pool_divisor (kh*kw for the usual windows
// with count_include_pad, PyTorch's default). One thread per output.
template <typename T>
MC_KERNEL avg_pool_forward(mc_index count, const T* x, T* y, mc_index H, mc_index W,
                           mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index ph,
                           mc_index pw, mc_index OH, mc_index OW, mc_index pad_bottom,
                           mc_index pad_right, mc_index count_include_pad) {
    // each i is one output (n, c, oy, ox)
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW, rest = i / OW;
        mc_index oy = rest % OH, plane = rest / OH;
        T sum = T(0);
        // add the window's pixels inside the image
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index yy = oy * sh - ph + ki;
            if (yy < 0 || yy >= H) continue;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index xx = ox * sw - pw + kj;
                if (xx < 0 || xx >= W) continue;
                sum += x[(plane * H + yy) * W + xx];
            }
        }
        y[i] = sum / T(mc_avg_pool_divisor(oy, ox, H, W, kh, kw, sh, sw, ph, pw, pad_bottom, pad_right,
                                           count_include_pad));
    }
}

// dy: (N, C, OH, OW)  ->  dx: (N, C, H, W); each pixel gathers dy / divisor from every
// window it lies in. One thread per input pixel.
template <typename T>
MC_KERNEL avg_pool_backward(mc_index count, const T* dy, T* dx, mc_index H, mc_index W,
                            mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index ph,
                            mc_index pw, mc_index OH, mc_index OW, mc_index pad_bottom,
                            mc_index pad_right, mc_index count_include_pad) {
    // each i is one input pixel (n, c, y, x)
    MC_GRID_LOOP(i, count) {
        mc_index xx = i % W, rest = i / W;
        mc_index yy = rest % H, plane = rest / H;
        mc_index oy0, oy1, ox0, ox1;
        mc_covering_outputs(yy, kh, sh, ph, OH, &oy0, &oy1);
        mc_covering_outputs(xx, kw, sw, pw, OW, &ox0, &ox1);
        T sum = T(0);
        // every output window that holds this pixel, in row-major order
        for (mc_index oy = oy0; oy < oy1; ++oy) {
            for (mc_index ox = ox0; ox < ox1; ++ox) {
                sum += dy[(plane * OH + oy) * OW + ox] /
                       T(mc_avg_pool_divisor(oy, ox, H, W, kh, kw, sh, sw, ph, pw, pad_bottom, pad_right,
                                             count_include_pad));
            }
        }
        dx[i] = sum;
    }
}
