// bias.cuh: adding a per-channel bias, and the reductions its gradient needs.
#pragma once
#include "common.cuh"

// y: (N, O, L) += b: (O,), for conv (L = OH*OW) and linear (L = 1) alike.
// One thread per entry of y.
template <typename T>
MC_KERNEL bias_forward(mc_index count, T* y, const T* b, mc_index O, mc_index L) {
    // each i is one entry (n, o, l) of y
    MC_GRID_LOOP(i, count) {
        y[i] += b[(i / L) % O];
    }
}

// x: (R, L)  ->  out: (R,), out[r] = sum over l of x[r, l].
// One thread per row. The bias gradient of a conv is sum_rows over (N*O, OH*OW)
// followed by sum_cols over (N, O): two passes with plenty of threads each,
// instead of O threads each walking N*OH*OW numbers. Fixed order, no atomics.
template <typename T>
MC_KERNEL sum_rows(mc_index count, const T* x, T* out, mc_index L) {
    // each r is one row; its loop walks the row left to right
    MC_GRID_LOOP(r, count) {
        T sum = T(0);
        for (mc_index l = 0; l < L; ++l) sum += x[r * L + l];
        out[r] = sum;
    }
}

// x: (R, L)  ->  out: (L,), out[l] = sum over r of x[r, l].
// One thread per column; neighbouring threads read neighbouring addresses (coalesced).
// Used for the bias gradient of linear layers (R = N) and to add up per-image
// weight gradients of a batched GEMM.
template <typename T>
MC_KERNEL sum_cols(mc_index count, const T* x, T* out, mc_index R) {
    // each l is one column; its loop walks the column top to bottom
    MC_GRID_LOOP(l, count) {
        T sum = T(0);
        for (mc_index r = 0; r < R; ++r) sum += x[r * count + l];   // count == L
        out[l] = sum;
    }
}
