// batch_norm.cuh: batch normalization (Ioffe & Szegedy, 2015), per channel.
//   y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]
// x is seen as (N, C, L): L = H*W for BatchNorm2d, 1 (or the length) for BatchNorm1d.
// In training the mean and (biased) variance are the batch's, over the M = N*L values
// of each channel; in eval they are the running statistics the layer keeps.
//
// The per-channel reductions (statistics, and the two sums of backward) are gathers:
// one thread per channel walks that channel's N*L values in a fixed order, so the
// result is the same on every run and every launch shape (no atomics). That leaves
// only C threads busy (64 for ResNet's first layers): a faster variant gives each
// channel a block whose threads reduce slices of it in shared memory (Welford's
// merge for the variance), as cuDNN does; it would live beside these as a numbered
// variant, checked against them before it is timed.
//
// The sums accumulate in double whatever T is: a channel of ResNet at batch 128 holds
// 128*56*56 = 401,408 values, and a float running sum of that many loses ~4 digits.
#pragma once
#include "common.cuh"

// x: (N, C, L)  ->  mean, var: (C,). var divides by N*L (the biased variance, used to
// normalise; the running variance is corrected by N*L/(N*L-1) on the Python side).
// Two passes over the channel: the mean, then the mean squared deviation from it (the
// one-pass E[x^2] - E[x]^2 cancels catastrophically when the mean is large).
template <typename T>
MC_KERNEL batch_norm_statistics(mc_index count, const T* x, T* mean, T* var, mc_index N, mc_index C,
                                mc_index L) {
    // each c is one channel; its loops walk the images n, then the positions l of each
    MC_GRID_LOOP(c, count) {
        double sum = 0.0;
        for (mc_index n = 0; n < N; ++n)
            for (mc_index l = 0; l < L; ++l) sum += (double)x[(n * C + c) * L + l];
        double m = sum / (double)(N * L);
        double squares = 0.0;
        for (mc_index n = 0; n < N; ++n)
            for (mc_index l = 0; l < L; ++l) {
                double d = (double)x[(n * C + c) * L + l] - m;
                squares += d * d;
            }
        mean[c] = (T)m;
        var[c] = (T)(squares / (double)(N * L));
    }
}

// x, y: (N, C, L); mean, var, weight, bias: (C,). One thread per element.
template <typename T>
MC_KERNEL batch_norm_forward(mc_index count, const T* x, const T* mean, const T* var, const T* weight,
                             const T* bias, T* y, mc_index C, mc_index L, T eps) {
    // each i is one element (n, c, l)
    MC_GRID_LOOP(i, count) {
        mc_index c = (i / L) % C;
        y[i] = (x[i] - mean[c]) / mc_sqrt(var[c] + eps) * weight[c] + bias[c];
    }
}

// x, dy: (N, C, L); mean, var: (C,)  ->  dweight, dbias: (C,):
//   dbias[c]   = sum over n, l of dy
//   dweight[c] = sum over n, l of dy * xhat,   xhat = (x - mean[c]) / sqrt(var[c] + eps)
// These are the gradients of weight and bias, and the two sums the gradient of x needs
// in training. One thread per channel, as batch_norm_statistics.
template <typename T>
MC_KERNEL batch_norm_backward_reduce(mc_index count, const T* x, const T* dy, const T* mean, const T* var,
                                     T* dweight, T* dbias, mc_index N, mc_index C, mc_index L, T eps) {
    // each c is one channel; its loop walks the images n, then the positions l of each
    MC_GRID_LOOP(c, count) {
        double sum_dy = 0.0, sum_dy_centered = 0.0;
        for (mc_index n = 0; n < N; ++n)
            for (mc_index l = 0; l < L; ++l) {
                mc_index i = (n * C + c) * L + l;
                sum_dy += (double)dy[i];
                sum_dy_centered += (double)dy[i] * ((double)x[i] - (double)mean[c]);
            }
        dbias[c] = (T)sum_dy;
        dweight[c] = (T)(sum_dy_centered / mc_sqrt((double)var[c] + (double)eps));
    }
}

// x, dy, dx: (N, C, L); mean, var, weight, dweight, dbias: (C,). One thread per element.
//   batch statistics (training):   dx = weight / sqrt(var + eps) * (dy - (dbias + xhat * dweight) / M)
//   running statistics (eval):     dx = weight / sqrt(var + eps) * dy
// with M = N*L: in training the mean and variance are functions of x too, which adds the
// two subtracted terms (the derivation is in backends/reference.py's batch_norm_backward).
template <typename T>
MC_KERNEL batch_norm_backward(mc_index count, const T* x, const T* dy, const T* mean, const T* var,
                              const T* weight, const T* dweight, const T* dbias, T* dx, mc_index C,
                              mc_index L, mc_index M, T eps, mc_index batch_statistics) {
    // each i is one element (n, c, l)
    MC_GRID_LOOP(i, count) {
        mc_index c = (i / L) % C;
        T inv_std = T(1) / mc_sqrt(var[c] + eps);
        T g = dy[i];
        if (batch_statistics) {
            T xhat = (x[i] - mean[c]) * inv_std;
            g -= (dbias[c] + xhat * dweight[c]) / T(M);
        }
        dx[i] = weight[c] * inv_std * g;
    }
}
