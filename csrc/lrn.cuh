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

// s^-beta, the factor of every output. pow costs more than all the rest of an element's work
// on a CPU and is slow on a GPU too; for the paper's beta = 3/4 (also Caffe's and PyTorch's
// default) s^-3/4 = 1 / (sqrt(s) * sqrt(sqrt(s))): two square roots, a product and a division,
// each correctly rounded on every build (IEEE; the GPU builds keep --prec-sqrt and --prec-div),
// so within 2 ulps of the exact power, as pow itself is within one.
template <typename T>
MC_HD T mc_lrn_power(T s, T beta) {
    if (beta == T(0.75)) {
        T root = mc_sqrt(s);
        return T(1) / (root * mc_sqrt(root));
    }
    return mc_pow(s, -beta);
}

// Forward in two launches, as Caffe splits it (LRNFillScale, then LRNComputeOutput): the window
// sums first, then the powers. The powers' launch has no inner loop, so on the host the compiler
// computes several at once in vector instructions (square roots and divisions four or eight at a
// time); in one launch, behind the window's loop, each had to wait its turn.

// x: (N, C, H, W)  ->  scale: (N, C, H, W), kept for the backward pass.
// In MC_ROW_LOOP: a row is one plane (n, c), its columns the pixels, count = N*C. Each
// element adds up its own window of `size` channels at its pixel (size is odd), in the
// reference's order; on the host a plane's window is found once and each of its `size`
// channels is read along the plane.
template <typename T>
MC_KERNEL lrn_scale(mc_index count, const T* x, T* scale, mc_index C, mc_index HW, mc_index size, T alpha, T k) {
    // each (plane, pixel) is one element (n, c, pixel); plane = n*C + c
    MC_ROW_LOOP(plane, count, pixel, HW) {
        mc_index c = plane % C, first = plane - c;           // first: channel 0 of the image
        mc_index lo, hi;
        mc_channel_window(c, size, C, &lo, &hi);
        T sum = T(0);
        // squares of the neighbouring channels at the same pixel
        for (mc_index cc = lo; cc < hi; ++cc) {
            T v = x[(first + cc) * HW + pixel];
            sum += v * v;
        }
        scale[plane * HW + pixel] = k + alpha * sum;
    }
}

// x, scale: (N, C, H, W)  ->  y = x * scale^-beta. One thread per element.
template <typename T>
MC_KERNEL lrn_forward(mc_index count, const T* x, const T* scale, T* y, T beta) {
    // each i is one element (n, c, pixel)
    MC_GRID_LOOP(i, count) {
        y[i] = x[i] * mc_lrn_power(scale[i], beta);
    }
}

// Backward, dx_i = dy_i scale_i^-beta - 2 alpha beta x_i * sum over j with i in window(j) of dy_j y_j / scale_j,
// in two launches. First the element-wise parts, one thread per element: dx's first term
// dy * scale^-beta, and each element's share of its neighbours' sums, ratio = dy * y / scale
// (computed once here instead of once in every window that holds it).
// y, scale, dy: (N, C, H, W)  ->  ratio, dx: (N, C, H, W).
template <typename T>
MC_KERNEL lrn_backward_terms(mc_index count, const T* y, const T* scale, const T* dy, T* ratio, T* dx, T beta) {
    // each i is one element (n, c, pixel)
    MC_GRID_LOOP(i, count) {
        ratio[i] = dy[i] * y[i] / scale[i];
        dx[i] = dy[i] * mc_lrn_power(scale[i], beta);
    }
}

// Then x, ratio: (N, C, H, W), dx holding the first term  ->  dx. The window is symmetric, so
// "the j whose window holds i" are i's own window. In MC_ROW_LOOP as lrn_scale: count = N*C.
template <typename T>
MC_KERNEL lrn_backward(mc_index count, const T* x, const T* ratio, T* dx, mc_index C, mc_index HW,
                       mc_index size, T alpha, T beta) {
    // each (plane, pixel) is one element (n, c, pixel)
    MC_ROW_LOOP(plane, count, pixel, HW) {
        mc_index c = plane % C, first = plane - c;
        mc_index lo, hi;
        mc_channel_window(c, size, C, &lo, &hi);
        T sum = T(0);
        // dy_j * y_j / scale_j over the neighbouring channels j
        for (mc_index cc = lo; cc < hi; ++cc) sum += ratio[(first + cc) * HW + pixel];
        mc_index i = plane * HW + pixel;
        dx[i] = dx[i] - T(2) * alpha * beta * x[i] * sum;
    }
}
