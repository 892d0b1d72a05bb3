// bias.cuh: adding a per-channel bias, and the reductions its gradient needs.
#pragma once
#include "common.cuh"

// y: (N, O, L) += b: (O,), for conv (L = OH*OW) and linear (L = 1) alike; count = N*O*L.
// One thread per entry of y. On the host a thread takes whole images (rows of O entries for a
// linear layer, planes of O rows of L for a conv) and finds o without dividing: the division
// chain (i / L) % O per entry took ten times longer than the addition (linear's 64x512: 290 us).
template <typename T>
MC_KERNEL bias_forward(mc_index count, T* y, const T* b, mc_index O, mc_index L) {
    if (L == 1) {
        // each (n, o) is one entry of y
        MC_ROW_LOOP(n, count / O, o, O) {
            y[n * O + o] += b[o];
        }
    } else {
        // each (n, o, l) is one entry of y
        MC_PLANE_LOOP(n, count / (O * L), o, O, l, L) {
            y[(n * O + o) * L + l] += b[o];
        }
    }
}

// x: (R, L)  ->  out: (R, S), out[r, s] = sum of x[r, l] over l = s, s + S, s + 2S, ... < L.
// S neighbouring threads share a row, each adding every S-th number of it. With S = 32 the
// 32 threads of a warp read 32 neighbouring numbers at every step (one coalesced 128-byte
// read), where one thread per row would read numbers L apart. A row's S partial sums are
// then added by a second, short sum_rows over (R, S) with S = 1 (one thread per row).
// The bias gradient of a conv is that, over (N*O, OH*OW), followed by sum_cols over (N, O).
// Fixed order, no atomics: the same bits on every run and every launch shape.
template <typename T>
MC_KERNEL sum_rows(mc_index count, const T* x, T* out, mc_index L, mc_index S) {
    // each i is one partial sum (r, s); its loop walks row r from s in steps of S
    MC_GRID_LOOP(i, count) {
        mc_index r = i / S, s = i % S;
        T sum = T(0);
        for (mc_index l = s; l < L; l += S) sum += x[r * L + l];
        out[i] = sum;
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
