// kernels.cuh: every kernel of minicnn, the one file each build includes.
#pragma once
#include "common.cuh"
#include "im2col.cuh"
#include "bias.cuh"
#include "pool.cuh"
#include "lrn.cuh"
#include "activation.cuh"
#include "dropout.cuh"
#include "loss.cuh"
#include "optim.cuh"
