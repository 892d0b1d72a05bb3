// activation.cuh: ReLU and leaky ReLU (negative_slope = 0 gives the plain ReLU).
#pragma once
#include "common.cuh"

// x: (any)  ->  y: same shape; y = x where x > 0, negative_slope * x elsewhere.
template <typename T>
MC_KERNEL relu_forward(mc_index count, const T* x, T* y, T negative_slope) {
    // each i is one element
    MC_GRID_LOOP(i, count) {
        y[i] = x[i] > T(0) ? x[i] : x[i] * negative_slope;
    }
}

// x, dy: (any)  ->  dx; dy where x > 0, negative_slope * dy elsewhere (slope at 0).
template <typename T>
MC_KERNEL relu_backward(mc_index count, const T* x, const T* dy, T* dx, T negative_slope) {
    // each i is one element
    MC_GRID_LOOP(i, count) {
        dx[i] = x[i] > T(0) ? dy[i] : dy[i] * negative_slope;
    }
}
