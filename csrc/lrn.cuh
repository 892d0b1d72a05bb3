// lrn.cuh: local response normalization across channels (Krizhevsky et al. 2012, section 3.3).
//   scale[n,c,y,x] = k + alpha * sum of x[n,c',y,x]^2 over c' in [c - size/2, c + size/2]
//   y = x * scale^-beta
// The window is clipped at the channel edges. alpha is the coefficient actually
// used (the paper's; the Python side divides by size for the Caffe/PyTorch convention).
#pragma once
#include "common.cuh"

// The channels lo <= c' < hi of channel c's window: the size nearest, clipped at the
// edges. Forward sums over it; backward too, because the window is symmetric.
MC_HD void mc_channel_window(mc_index c, mc_index size, mc_index C, mc_index* lo, mc_index* hi) {
    *lo = c - size / 2 < 0 ? 0 : c - size / 2;
    *hi = c + size / 2 + 1 > C ? C : c + size / 2 + 1;
}

// x: (N, C, H, W)  ->  y, scale: (N, C, H, W). scale is kept for the backward pass.
// One thread per element; each walks its window of `size` channels (size is odd).
template <typename T>
MC_KERNEL lrn_forward(mc_index count, const T* x, T* y, T* scale, mc_index C, mc_index HW,
                      mc_index size, T alpha, T beta, T k) {
    // each i is one element (n, c, pixel)
    MC_GRID_LOOP(i, count) {
        mc_index pixel = i % HW, rest = i / HW;
        mc_index c = rest % C, n = rest / C;
        mc_index lo, hi;
        mc_channel_window(c, size, C, &lo, &hi);
        T sum = T(0);
        // squares of the neighbouring channels at the same pixel
        for (mc_index cc = lo; cc < hi; ++cc) {
            T v = x[(n * C + cc) * HW + pixel];
            sum += v * v;
        }
        T s = k + alpha * sum;
        scale[i] = s;
        y[i] = x[i] * mc_pow(s, -beta);
    }
}

// x, y, scale, dy: (N, C, H, W)  ->  dx: (N, C, H, W).
//   dx_i = dy_i scale_i^-beta - 2 alpha beta x_i * sum over j with i in window(j) of dy_j y_j / scale_j
// The window is symmetric, so "the j whose window holds i" are i's own window.
// One thread per element.
template <typename T>
MC_KERNEL lrn_backward(mc_index count, const T* x, const T* y, const T* scale, const T* dy,
                       T* dx, mc_index C, mc_index HW, mc_index size, T alpha, T beta) {
    // each i is one element (n, c, pixel)
    MC_GRID_LOOP(i, count) {
        mc_index pixel = i % HW, rest = i / HW;
        mc_index c = rest % C, n = rest / C;
        mc_index lo, hi;
        mc_channel_window(c, size, C, &lo, &hi);
        T sum = T(0);
        // dy_j * y_j / scale_j over the neighbouring channels j
        for (mc_index cc = lo; cc < hi; ++cc) {
            mc_index j = (n * C + cc) * HW + pixel;
            sum += dy[j] * y[j] / scale[j];
        }
        dx[i] = dy[i] * mc_pow(scale[i], -beta) - T(2) * alpha * beta * x[i] * sum;
    }
}
