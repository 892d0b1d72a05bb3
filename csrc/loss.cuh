// loss.cuh: softmax cross-entropy, mean over the batch.
//   loss = mean over n of -log softmax(logits[n])[labels[n]]
#pragma once
#include "common.cuh"

// logits: (N, K), labels: (N,) int64  ->  probs: (N, K), row_loss: (N,).
// One thread per row (a row is one example). Stable softmax: subtract the row max
// before exp. A label outside [0, K) gives a NaN loss instead of a bad read.
template <typename T>
MC_KERNEL softmax_cross_entropy_forward(mc_index count, const T* logits, const mc_index* labels,
                                        T* probs, T* row_loss, mc_index K) {
    // each n is one example
    MC_GRID_LOOP(n, count) {
        const T* z = logits + n * K;
        T* p = probs + n * K;
        T zmax = z[0];
        for (mc_index j = 1; j < K; ++j) zmax = z[j] > zmax ? z[j] : zmax;   // row max
        T sum = T(0);
        for (mc_index j = 0; j < K; ++j) sum += mc_exp(z[j] - zmax);         // softmax denominator
        T log_sum = mc_log(sum);
        for (mc_index j = 0; j < K; ++j) p[j] = mc_exp(z[j] - zmax - log_sum); // probabilities
        mc_index label = labels[n];
        row_loss[n] = (label >= 0 && label < K) ? -(z[label] - zmax - log_sum) : mc_nan<T>();
    }
}

// row_loss: (N,)  ->  loss: (1,), the batch mean. A single thread adds the rows in
// order, so the result does not depend on the launch shape.
template <typename T>
MC_KERNEL mean_forward(mc_index count, const T* row_loss, T* loss, mc_index N) {
    // count is 1: one output
    MC_GRID_LOOP(i, count) {
        T sum = T(0);
        for (mc_index n = 0; n < N; ++n) sum += row_loss[n];
        loss[i] = sum / T(N);
    }
}

// probs: (N, K), labels: (N,), dloss: (1,)  ->  dlogits: (N, K) = (probs - onehot) * dloss / N.
// dloss is read from memory so the GPU never waits for the host to learn it.
// One thread per entry.
template <typename T>
MC_KERNEL softmax_cross_entropy_backward(mc_index count, const T* probs, const mc_index* labels,
                                         const T* dloss, T* dlogits, mc_index N, mc_index K) {
    // each i is one entry (n, j)
    MC_GRID_LOOP(i, count) {
        mc_index n = i / K, j = i % K;
        T onehot = labels[n] == j ? T(1) : T(0);
        dlogits[i] = (probs[i] - onehot) * (dloss[0] / T(N));
    }
}
