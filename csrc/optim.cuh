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

// param, grad, m, v: (any, same shape). AdamW (Loshchilov & Hutter; PyTorch's AdamW): the weight
// decay is decoupled from the gradient, a shrink of the weights before Adam's step:
//   param *= decay (= 1 - lr * weight_decay, from the host);  m, v as Adam's with g = grad
//   param -= lr * (m / bc1) / (sqrt(v / bc2) + eps),  bc = 1 - beta^step
template <typename T>
MC_KERNEL adamw_update(mc_index count, T* param, const T* grad, T* m, T* v, T lr, T beta1,
                       T beta2, T one_minus_beta1, T one_minus_beta2, T bias_correction1,
                       T bias_correction2, T eps, T decay) {
    // each i is one parameter entry
    MC_GRID_LOOP(i, count) {
        T p = param[i] * decay;
        T g = grad[i];
        T mi = m[i] * beta1;
        mi += one_minus_beta1 * g;
        T vi = v[i] * beta2;
        vi += one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        T m_hat = mi / bias_correction1;
        T v_hat = vi / bias_correction2;
        param[i] = p - lr * m_hat / (mc_sqrt(v_hat) + eps);
    }
}

// param, grad, square_avg, grad_avg, buffer: (any, same shape). PyTorch's RMSprop (Hinton's lecture 6e):
//   g = grad + weight_decay * param;  square_avg = alpha square_avg + (1 - alpha) g^2
//   centered: grad_avg = alpha grad_avg + (1 - alpha) g;  avg = sqrt(square_avg - grad_avg^2) + eps
//   else:     avg = sqrt(square_avg) + eps
//   momentum > 0: buffer = momentum buffer + g / avg;  param -= lr * buffer
//   otherwise:    param -= lr * g / avg
// grad_avg is read and written only when centered, buffer only with momentum (backends/kernels.py
// passes param in their place otherwise).
template <typename T>
MC_KERNEL rmsprop_update(mc_index count, T* param, const T* grad, T* square_avg, T* grad_avg, T* buffer,
                         T lr, T alpha, T one_minus_alpha, T eps, T weight_decay, T momentum,
                         mc_index centered) {
    // each i is one parameter entry
    MC_GRID_LOOP(i, count) {
        T g = grad[i] + weight_decay * param[i];
        T sq = square_avg[i] * alpha;
        sq += one_minus_alpha * g * g;
        square_avg[i] = sq;
        T avg;
        if (centered) {
            T ga = grad_avg[i] * alpha;
            ga += one_minus_alpha * g;
            grad_avg[i] = ga;
            avg = mc_sqrt(sq - ga * ga);
        } else {
            avg = mc_sqrt(sq);
        }
        avg += eps;
        if (momentum > T(0)) {
            T b = buffer[i] * momentum;
            b += g / avg;
            buffer[i] = b;
            param[i] -= lr * b;
        } else {
            param[i] -= lr * g / avg;
        }
    }
}
