// dropout.cuh: inverted dropout with a counter-based mask.
// Element i is kept when (mc_dropout_hash(seed, offset + i) >> 8) >= threshold: a
// 24-bit uniform draw, so p = threshold / 2^24. Kept elements are multiplied by
// scale = 1 / (1 - p). No mask is stored: backward recomputes it from the seed.
// offset is where this array's first element sits in a larger one: in data-parallel
// training a rank holds a slice of the global batch, and offset = (the rank's first
// sample) * (elements per sample) makes it draw the very mask one process would.
#pragma once
#include "common.cuh"

// x: (any)  ->  y: same shape.
template <typename T>
MC_KERNEL dropout_forward(mc_index count, const T* x, T* y, unsigned int threshold, T scale,
                          unsigned int seed, mc_index offset) {
    // each i is one element, with its own hash draw at its place offset + i
    MC_GRID_LOOP(i, count) {
        bool keep = (mc_dropout_hash(seed, (unsigned long long)(offset + i)) >> 8) >= threshold;
        y[i] = keep ? x[i] * scale : T(0);
    }
}

// dy: (any)  ->  dx: the same mask (same seed) and the same scale.
template <typename T>
MC_KERNEL dropout_backward(mc_index count, const T* dy, T* dx, unsigned int threshold, T scale,
                           unsigned int seed, mc_index offset) {
    // each i is one element, with its own hash draw at its place offset + i
    MC_GRID_LOOP(i, count) {
        bool keep = (mc_dropout_hash(seed, (unsigned long long)(offset + i)) >> 8) >= threshold;
        dx[i] = keep ? dy[i] * scale : T(0);
    }
}
