// lrn_variants.cuh: numbered versions of LRN forward and backward, for dev/lrn.py.
//
// Every variant has the signature of csrc/lrn.cuh's kernels (x, y, scale, dy, dx:
// (N, C, H, W) seen as (N, C, HW); the window of channel c is the `size` channels
// nearest it, clipped at the edges), so each can stand in for the others, and
// dev/lrn.py checks each against the NumPy reference before it times it. Only the
// count differs: it is what the variant's threads are.
//
//   1  the first kernels: one thread per element, each adding up its own
//      window of `size` channels (count = N*C*HW). Every window sum is added in the
//      reference's order; only pow differs from NumPy's
//   2  Caffe's LRNFillScale / LRNComputeDiff: one thread per column (n, pixel), which
//      walks the C channels keeping a running window sum, adding the channel that
//      enters the window and subtracting the one that leaves (count = N*HW). Two
//      reads and two adds per channel instead of `size`, whatever the size; but the
//      sums are no longer added in the reference's order (an add and a later subtract
//      of the same square need not cancel exactly), so the results differ from it
//      within rounding, and N*HW threads are far fewer than N*C*HW on a GPU.
//      Caffe also splits the forward in two launches (the scale by columns, then
//      y = x * scale^-beta by elements, so the pow runs on every thread); here the
//      column computes both, keeping the signature of csrc/lrn.cuh's kernel.
//   3  variant 1's arithmetic in MC_ROW_LOOP (csrc/common.cuh),
//      a row per plane (n, c) (count = N*C): on the GPU one thread per element, as 1; on the
//      host a plane's window is found once and its channels are read along the plane, with
//      no division per element. And s^-beta by mc_lrn_power: for beta = 3/4, two square roots
//      and a division instead of pow (within 2 ulps; variants 1 and 2 call pow).
//   4  3, with the backward in two launches (dy * y / scale once per element, then the
//      window sums over them). The same bits as 3.
//   5  the kernels csrc/lrn.cuh ships: 4 with the powers in element-wise launches (the
//      window sums into scale, then y = x * scale^-beta; backward's dy * scale^-beta beside
//      the ratios), which the host compiler turns into vector code. The same bits as 3.
#pragma once
#include "lrn.cuh"

// ----- variant 1: the first kernels (csrc/lrn.cuh until variant 3 replaced them)
// x: (N, C, H, W)  ->  y, scale: (N, C, H, W). scale is kept for the backward pass.
// One thread per element; each walks its window of `size` channels (size is odd).
template <typename T>
MC_KERNEL lrn_forward_1(mc_index count, const T* x, T* y, T* scale, mc_index C, mc_index HW,
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
MC_KERNEL lrn_backward_1(mc_index count, const T* x, const T* y, const T* scale, const T* dy,
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

// ----- variant 2
// x: (N, C, HW)  ->  y, scale: (N, C, HW). One thread per column (n, pixel).
template <typename T>
MC_KERNEL lrn_forward_2(mc_index count, const T* x, T* y, T* scale, mc_index C, mc_index HW,
                        mc_index size, T alpha, T beta, T k) {
    mc_index half = size / 2;
    // each i is one column (n, pixel): its channel c is at offset c * HW
    MC_GRID_LOOP(i, count) {
        mc_index pixel = i % HW, n = i / HW;
        mc_index first = n * C * HW + pixel;                   // channel 0 of the column
        T sum = T(0);
        // channel 0's window is [0, half]: the channels below half enter before the walk
        for (mc_index c = 0; c < half && c < C; ++c) {
            T v = x[first + c * HW];
            sum += v * v;
        }
        // walk the channels: channel c + half enters the window, channel c - half - 1 leaves it
        for (mc_index c = 0; c < C; ++c) {
            if (c + half < C) {
                T v = x[first + (c + half) * HW];
                sum += v * v;
            }
            if (c - half - 1 >= 0) {
                T v = x[first + (c - half - 1) * HW];
                sum -= v * v;
            }
            mc_index at = first + c * HW;
            T s = k + alpha * sum;
            scale[at] = s;
            y[at] = x[at] * mc_pow(s, -beta);
        }
    }
}

// x, y, scale, dy: (N, C, HW)  ->  dx: (N, C, HW). One thread per column (n, pixel):
//   dx_c = dy_c scale_c^-beta - 2 alpha beta x_c * (sum of dy_j y_j / scale_j over c's window),
// the window sum kept running as in forward.
template <typename T>
MC_KERNEL lrn_backward_2(mc_index count, const T* x, const T* y, const T* scale, const T* dy,
                         T* dx, mc_index C, mc_index HW, mc_index size, T alpha, T beta) {
    mc_index half = size / 2;
    // each i is one column (n, pixel)
    MC_GRID_LOOP(i, count) {
        mc_index pixel = i % HW, n = i / HW;
        mc_index first = n * C * HW + pixel;
        T sum = T(0);
        for (mc_index c = 0; c < half && c < C; ++c) {
            mc_index j = first + c * HW;
            sum += dy[j] * y[j] / scale[j];
        }
        // dy_j * y_j / scale_j entering and leaving the window, as forward's squares
        for (mc_index c = 0; c < C; ++c) {
            if (c + half < C) {
                mc_index j = first + (c + half) * HW;
                sum += dy[j] * y[j] / scale[j];
            }
            if (c - half - 1 >= 0) {
                mc_index j = first + (c - half - 1) * HW;
                sum -= dy[j] * y[j] / scale[j];
            }
            mc_index at = first + c * HW;
            dx[at] = dy[at] * mc_pow(scale[at], -beta) - T(2) * alpha * beta * x[at] * sum;
        }
    }
}

// ----- variant 3 (csrc/lrn.cuh's kernels until variants 4 and 5 replaced them)
// x: (N, C, H, W)  ->  y, scale: (N, C, H, W). scale is kept for the backward pass.
// In MC_ROW_LOOP: a row is one plane (n, c), its columns the pixels, count = N*C. Each
// element adds up its own window of `size` channels at its pixel (size is odd), in the
// reference's order; on the host a plane's window is found once and each of its `size`
// channels is read along the plane.
template <typename T>
MC_KERNEL lrn_forward_3(mc_index count, const T* x, T* y, T* scale, mc_index C, mc_index HW,
                        mc_index size, T alpha, T beta, T k) {
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
        mc_index i = plane * HW + pixel;
        T s = k + alpha * sum;
        scale[i] = s;
        y[i] = x[i] * mc_lrn_power(s, beta);
    }
}

// x, y, scale, dy: (N, C, H, W)  ->  dx: (N, C, H, W).
//   dx_i = dy_i scale_i^-beta - 2 alpha beta x_i * sum over j with i in window(j) of dy_j y_j / scale_j
// The window is symmetric, so "the j whose window holds i" are i's own window.
// In MC_ROW_LOOP as lrn_forward: a row is one plane (n, c), count = N*C.
template <typename T>
MC_KERNEL lrn_backward_3(mc_index count, const T* x, const T* y, const T* scale, const T* dy,
                         T* dx, mc_index C, mc_index HW, mc_index size, T alpha, T beta) {
    // each (plane, pixel) is one element (n, c, pixel)
    MC_ROW_LOOP(plane, count, pixel, HW) {
        mc_index c = plane % C, first = plane - c;
        mc_index lo, hi;
        mc_channel_window(c, size, C, &lo, &hi);
        T sum = T(0);
        // dy_j * y_j / scale_j over the neighbouring channels j
        for (mc_index cc = lo; cc < hi; ++cc) {
            mc_index j = (first + cc) * HW + pixel;
            sum += dy[j] * y[j] / scale[j];
        }
        mc_index i = plane * HW + pixel;
        dx[i] = dy[i] * mc_lrn_power(scale[i], beta) - T(2) * alpha * beta * x[i] * sum;
    }
}

// ----- variant 4: variant 3's forward; the backward csrc/lrn.cuh had until variant 5 replaced it
// The backward in two launches. First each element's share of its neighbours' gradients,
// ratio = dy * y / scale: y, scale, dy, ratio: (N, C, H, W), one thread per element. It is
// computed once here instead of once in every window that holds it (`size` divisions).
template <typename T>
MC_KERNEL lrn_backward_ratio_4(mc_index count, const T* y, const T* scale, const T* dy, T* ratio) {
    // each i is one element (n, c, pixel)
    MC_GRID_LOOP(i, count) {
        ratio[i] = dy[i] * y[i] / scale[i];
    }
}

// Then x, ratio, scale, dy: (N, C, H, W)  ->  dx: (N, C, H, W).
//   dx_i = dy_i scale_i^-beta - 2 alpha beta x_i * sum over j with i in window(j) of ratio_j
// The window is symmetric, so "the j whose window holds i" are i's own window.
// In MC_ROW_LOOP as lrn_forward: a row is one plane (n, c), count = N*C.
template <typename T>
MC_KERNEL lrn_backward_4(mc_index count, const T* x, const T* ratio, const T* scale, const T* dy,
                         T* dx, mc_index C, mc_index HW, mc_index size, T alpha, T beta) {
    // each (plane, pixel) is one element (n, c, pixel)
    MC_ROW_LOOP(plane, count, pixel, HW) {
        mc_index c = plane % C, first = plane - c;
        mc_index lo, hi;
        mc_channel_window(c, size, C, &lo, &hi);
        T sum = T(0);
        // dy_j * y_j / scale_j over the neighbouring channels j
        for (mc_index cc = lo; cc < hi; ++cc) sum += ratio[(first + cc) * HW + pixel];
        mc_index i = plane * HW + pixel;
        dx[i] = dy[i] * mc_lrn_power(scale[i], beta) - T(2) * alpha * beta * x[i] * sum;
    }
}

// ----- variant 5 is csrc/lrn.cuh's lrn_scale, lrn_forward, lrn_backward_terms and lrn_backward, included
// above: 4 with the powers in element-wise launches, as Caffe splits its forward.
