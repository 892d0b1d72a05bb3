// kernels.cuh: every kernel of minicnn, the one file each build includes.
#pragma once
#include "common.cuh"
#include "im2col.cuh"
#include "bias.cuh"
#include "pool.cuh"
#include "lrn.cuh"
#include "batch_norm.cuh"
#include "activation.cuh"
#include "dropout.cuh"
#include "loss.cuh"
#include "optim.cuh"

// The list of kernels, once: each binding module applies its own X(kernel) to every name,
// and backends/cuda.py reads the names from this macro (kernel_names()) for NVRTC.
#define MC_FOR_EACH_KERNEL(X)                                           \
    X(im2col); X(col2im); X(side_by_side_to_nchw); X(nchw_to_side_by_side); \
    X(bias_forward); X(sum_rows); X(sum_cols);                          \
    X(max_pool_forward); X(max_pool_backward);                          \
    X(avg_pool_forward); X(avg_pool_backward);                          \
    X(lrn_scale); X(lrn_forward); X(lrn_backward_terms); X(lrn_backward); X(relu_forward); X(relu_backward); \
    X(batch_norm_statistics); X(batch_norm_forward);                    \
    X(batch_norm_backward_reduce); X(batch_norm_backward);              \
    X(dropout_forward); X(dropout_backward);                            \
    X(softmax_partials); X(softmax_cross_entropy_forward);              \
    X(softmax_probs); X(mean_forward);                                  \
    X(softmax_cross_entropy_backward);                                  \
    X(nll_loss_forward); X(nll_loss_backward);                          \
    X(squared_error_forward); X(squared_error_backward);                \
    X(sgd_update); X(adam_update); X(adamw_update); X(rmsprop_update)
