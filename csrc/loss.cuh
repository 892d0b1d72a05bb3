// loss.cuh: softmax cross-entropy, mean over the batch.
//   loss = mean over n of -log softmax(logits[n])[labels[n]]
// Stable softmax: log softmax(z)_j = z_j - zmax - log(sum over k of exp(z_k - zmax)).
//
// A row's max and sum are reductions over its K classes. As in sum_rows (bias.cuh), S
// neighbouring threads share a row and each walks every S-th class (coalesced reads);
// a second kernel, one thread per row, merges the S slices. Then one thread per entry
// writes the probabilities. Four launches, each with plenty of threads, instead of one
// thread per example walking its row three times.
#pragma once
#include "common.cuh"

// logits: (N, K)  ->  part_max, part_sum: (N, S), for S <= K.
// Slice s of row n holds the classes j = s, s + S, s + 2S, ... < K:
//   part_max[n, s] = the largest z_j of the slice
//   part_sum[n, s] = sum over the slice of exp(z_j - part_max[n, s])
template <typename T>
MC_KERNEL softmax_partials(mc_index count, const T* logits, T* part_max, T* part_sum, mc_index K,
                           mc_index S) {
    // each i is one slice (n, s); its loops walk row n from class s in steps of S
    MC_GRID_LOOP(i, count) {
        mc_index n = i / S, s = i % S;
        const T* z = logits + n * K;
        T m = z[s];
        for (mc_index j = s + S; j < K; j += S) m = z[j] > m ? z[j] : m;
        T sum = T(0);
        for (mc_index j = s; j < K; j += S) sum += mc_exp(z[j] - m);
        part_max[i] = m;
        part_sum[i] = sum;
    }
}

// logits: (N, K), labels: (N,) int64, part_max, part_sum: (N, S)
//   ->  row_max, log_sum, row_loss: (N,)
// Merges row n's S slices: row_max = the largest part_max; each slice's sum is rescaled
// from its own max to the row max, sum = sum over s of part_sum[s] * exp(part_max[s] - row_max);
// log_sum = log(sum); row_loss = -(z[label] - row_max - log_sum).
// A label outside [0, K) gives a NaN loss instead of a bad read.
template <typename T>
MC_KERNEL softmax_cross_entropy_forward(mc_index count, const T* logits, const mc_index* labels,
                                        const T* part_max, const T* part_sum, T* row_max,
                                        T* log_sum, T* row_loss, mc_index K, mc_index S) {
    // each n is one example; its loops walk the row's S slices in order
    MC_GRID_LOOP(n, count) {
        const T* pm = part_max + n * S;
        const T* ps = part_sum + n * S;
        T zmax = pm[0];
        for (mc_index s = 1; s < S; ++s) zmax = pm[s] > zmax ? pm[s] : zmax;
        T sum = T(0);
        for (mc_index s = 0; s < S; ++s) sum += ps[s] * mc_exp(pm[s] - zmax);
        T ls = mc_log(sum);
        row_max[n] = zmax;
        log_sum[n] = ls;
        mc_index label = labels[n];
        row_loss[n] = (label >= 0 && label < K) ? -(logits[n * K + label] - zmax - ls) : mc_nan<T>();
    }
}

// logits: (N, K), row_max, log_sum: (N,)  ->  probs: (N, K) = exp(z - row_max - log_sum).
// One thread per entry.
template <typename T>
MC_KERNEL softmax_probs(mc_index count, const T* logits, const T* row_max, const T* log_sum,
                        T* probs, mc_index K) {
    // each i is one entry (n, j)
    MC_GRID_LOOP(i, count) {
        mc_index n = i / K;
        probs[i] = mc_exp(logits[i] - row_max[n] - log_sum[n]);
    }
}

// partial: (S,), the S partial sums of sum_rows over the row_loss (N,) seen as (1, N)
//   ->  loss: (1,) = (sum of the partial sums) / N.
// A single thread adds S <= 32 numbers in order: the result does not depend on the launch.
template <typename T>
MC_KERNEL mean_forward(mc_index count, const T* partial, T* loss, mc_index S, mc_index N) {
    // count is 1: one output
    MC_GRID_LOOP(i, count) {
        T sum = T(0);
        for (mc_index s = 0; s < S; ++s) sum += partial[s];
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

// ----- negative log-likelihood (nll_loss; cross_entropy with options is log_softmax, then this)
// log_probs: (N, C, D), labels: (N, D) int64, weight: (C,)  ->  loss, counted: (N, D).
// D is the number of positions per image (1 for (N, C) inputs). One thread per sample (n, d):
//   loss = -weight[y] * log_probs[n, y, d],  counted = weight[y]     (y = labels[n, d])
//   loss = counted = 0 where y == ignore_index; a y outside [0, C) gives NaN, not a bad read.
template <typename T>
MC_KERNEL nll_loss_forward(mc_index count, const T* log_probs, const mc_index* labels, const T* weight,
                           T* loss, T* counted, mc_index C, mc_index D, mc_index ignore_index) {
    // each i is one sample (n, d)
    MC_GRID_LOOP(i, count) {
        mc_index n = i / D, d = i % D;
        mc_index y = labels[i];
        if (y == ignore_index) {
            loss[i] = T(0);
            counted[i] = T(0);
        } else if (y < 0 || y >= C) {
            loss[i] = mc_nan<T>();
            counted[i] = mc_nan<T>();
        } else {
            loss[i] = -weight[y] * log_probs[(n * C + y) * D + d];
            counted[i] = weight[y];
        }
    }
}

// labels: (N, D), weight: (C,), dloss: (N, D)  ->  dlog_probs: (N, C, D),
//   dlog_probs[n, c, d] = -weight[c] * dloss[n, d] where c == labels[n, d] (not ignored), 0 elsewhere.
// One thread per entry of dlog_probs: each reads its own sample's label (a gather).
template <typename T>
MC_KERNEL nll_loss_backward(mc_index count, const mc_index* labels, const T* weight, const T* dloss,
                            T* dlog_probs, mc_index C, mc_index D, mc_index ignore_index) {
    // each i is one entry (n, c, d)
    MC_GRID_LOOP(i, count) {
        mc_index d = i % D;
        mc_index c = (i / D) % C;
        mc_index sample = (i / (C * D)) * D + d;
        mc_index y = labels[sample];
        dlog_probs[i] = (y == c && y != ignore_index) ? -weight[c] * dloss[sample] : T(0);
    }
}

// ----- squared error (mse_loss); the reduction is done by the caller
// x, target  ->  out: (any, same shape), out = (x - target)^2. One thread per element.
template <typename T>
MC_KERNEL squared_error_forward(mc_index count, const T* x, const T* target, T* out) {
    // each i is one element
    MC_GRID_LOOP(i, count) {
        T d = x[i] - target[i];
        out[i] = d * d;
    }
}

// x, target, dloss  ->  dx = 2 (x - target) dloss. One thread per element.
template <typename T>
MC_KERNEL squared_error_backward(mc_index count, const T* x, const T* target, const T* dloss, T* dx) {
    // each i is one element
    MC_GRID_LOOP(i, count) {
        dx[i] = T(2) * (x[i] - target[i]) * dloss[i];
    }
}
