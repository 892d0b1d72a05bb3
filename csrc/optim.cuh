// optim.cuh: in-place optimizer updates, one thread per parameter entry.
// Scalars derived from the hyperparameters (1 - beta, bias corrections) are
// computed once on the host in double and passed in, exactly as the NumPy
// reference computes them, so the host build can match it bit for bit.
#pragma once
#include "common.cuh"

// param, grad, velocity: (any, same shape). PyTorch's SGD (the paper's rule with lr folded in):
//   g = grad + weight_decay * param
//   momentum == 0:  param -= lr * g
//   otherwise:      v = momentum * v + g;  param -= lr * (nesterov ? g + momentum * v : v)
template <typename T>
MC_KERNEL sgd_update(mc_index count, T* param, const T* grad, T* velocity, T lr, T momentum,
                     T weight_decay, mc_index nesterov) {
    // each i is one parameter entry
    MC_GRID_LOOP(i, count) {
        T g = grad[i] + weight_decay * param[i];
        if (momentum == T(0)) {
            param[i] -= lr * g;
        } else {
            T v = velocity[i] * momentum;
            v += g;
            velocity[i] = v;
            param[i] -= lr * (nesterov ? g + momentum * v : v);
        }
    }
}

// param, grad, m, v: (any, same shape). Adam (Kingma & Ba) with bias correction, L2 weight decay:
//   g = grad + wd * param;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   param -= lr * (m / bc1) / (sqrt(v / bc2) + eps),  bc = 1 - beta^step
template <typename T>
MC_KERNEL adam_update(mc_index count, T* param, const T* grad, T* m, T* v, T lr, T beta1,
                      T beta2, T one_minus_beta1, T one_minus_beta2, T bias_correction1,
                      T bias_correction2, T eps, T weight_decay) {
    // each i is one parameter entry
    MC_GRID_LOOP(i, count) {
        T g = grad[i] + weight_decay * param[i];
        T mi = m[i] * beta1;
        mi += one_minus_beta1 * g;
        T vi = v[i] * beta2;
        vi += one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        T m_hat = mi / bias_correction1;
        T v_hat = vi / bias_correction2;
        param[i] -= lr * m_hat / (mc_sqrt(v_hat) + eps);
    }
}
