// host_module.cpp: minicnn._host, every csrc kernel compiled for the CPU.
//
// common.cuh's shim turns each kernel into a plain C++ function; host_launch.h runs it
// on OpenMP threads, each walking its own chunk of the grid-stride loop's indices
// (set_num_threads(1): one plain call that visits every index in order, to step
// through with a debugger). This module exposes each kernel twice, as <name>_float32
// and <name>_float64, taking NumPy arrays where the kernel takes pointers and Python
// numbers where it takes scalars, in the kernel's own argument order (the first
// argument is always the count of loop indices).
//
// A kernel trusts its count and shape arguments: given a count larger than its
// buffers it reads and writes past them. These bindings are callable from Python
// by anyone, so before a kernel runs they check that every array holds at least
// what the kernel will touch (the table "What each kernel touches" below) and
// raise ValueError otherwise. The CUDA bindings (src/cuda_module.cu) take raw
// device pointers, which carry no size: there backends/kernels.py is what
// guarantees the sizes, by allocating every buffer from the shapes it launches with.
#include <string>

#include "host_launch.h"   // Size, SizeError, Arg, def_kernel, the launch on threads
#include "kernels.cuh"

// ---------------------------------------------------------------------------
// The size checks. They raise SizeError; the binding adds the kernel's name.

// HOLDS(x, n): the kernel touches elements [0, n) of array x.
#define HOLDS(array, n) holds(array, n, #array)
inline void holds(Size array, mc_index needed, const char* name) {
    if (needed > array.elements)
        throw SizeError{std::string("array '") + name + "' holds " + std::to_string(array.elements) +
                        " elements, but the count and shape arguments make the kernel touch " +
                        std::to_string(needed)};
}

// POSITIVE(count, v): a shape argument the kernel divides by must be >= 1 whenever there is work.
#define POSITIVE(count, value) positive(count, value, #value)
inline void positive(mc_index count, mc_index value, const char* name) {
    if (count > 0 && value < 1)
        throw SizeError{std::string("argument '") + name + "' must be >= 1, got " + std::to_string(value)};
}

// AT_MOST(count, v, limit): a shape argument bounded by another whenever there is work.
#define AT_MOST(count, value, limit) at_most(count, value, limit, #value, #limit)
inline void at_most(mc_index count, mc_index value, mc_index limit, const char* name, const char* limit_name) {
    if (count > 0 && value > limit)
        throw SizeError{std::string("argument '") + name + "' (" + std::to_string(value) + ") must be <= '" +
                        limit_name + "' (" + std::to_string(limit) + ")"};
}

// a * b * ..., or an error when it does not fit in 64 bits (the kernel's indices would wrap).
inline mc_index product(std::initializer_list<mc_index> factors) {
    mc_index result = 1;
    for (mc_index f : factors) {
        if (f <= 0) return 0;   // an empty extent: the kernel's bounds tests let nothing through
        if (__builtin_mul_overflow(result, f, &result))
            throw SizeError{"the count and shape arguments overflow 64-bit indices"};
    }
    return result;
}

// How many groups of `per` consecutive indices the indices 0 .. count-1 reach: ceil(count / per).
inline mc_index groups_of(mc_index count, mc_index per) { return count <= 0 ? 0 : (count - 1) / per + 1; }

// ---------------------------------------------------------------------------
// What each kernel touches: one function per kernel of MC_FOR_EACH_KERNEL, with the
// kernel's own parameter list and each pointer replaced by the Size of its array.
// Each line states how many elements one array must hold, worked out from count and
// the shape arguments as the kernel's index arithmetic reaches them (the shapes are
// in the comment on top of each kernel in csrc/). A kernel without its function
// here does not compile, so the check cannot be forgotten for a new kernel.
#define MC_SIZES(kernel) template <typename T> void kernel##_sizes

// count = C*kh*kw*N planes (c, ki, kj, n) of OH*OW entries each of cols (C*kh*kw, N, OH*OW);
// each reads image plane (n, c) of x.
MC_SIZES(im2col)(mc_index count, Size x, Size cols, mc_index N, mc_index C, mc_index H, mc_index W, mc_index kh,
                 mc_index kw, mc_index, mc_index, mc_index, mc_index, mc_index, mc_index, mc_index OH, mc_index OW) {
    POSITIVE(count, N); POSITIVE(count, kh); POSITIVE(count, kw);
    AT_MOST(count, count, product({C, kh, kw, N}));
    HOLDS(x, product({count, OH, OW}) > 0 ? product({N, C, H, W}) : 0);
    HOLDS(cols, product({count, OH, OW}));
}

// x (N, C, H, W) has count rows (n, c, y) of W pixels, each gathered from its channel's rows of
// cols (C*kh*kw, N, OH*OW).
MC_SIZES(col2im)(mc_index count, Size cols, Size x, mc_index N, mc_index C, mc_index H, mc_index W, mc_index kh,
                 mc_index kw, mc_index sh, mc_index sw, mc_index, mc_index, mc_index dh, mc_index dw, mc_index OH,
                 mc_index OW) {
    POSITIVE(count, C); POSITIVE(count, H); POSITIVE(count, sh); POSITIVE(count, sw);
    AT_MOST(count, count, product({N, C, H}));
    HOLDS(x, product({count, W}));
    HOLDS(cols, count > 0 && W > 0 ? product({C, kh, kw, N, OH, OW}) : 0);
}

// y (N, O, L) has count rows (n, o) of L entries, each read from y_side (O, N, L); b (O,).
MC_SIZES(side_by_side_to_nchw)(mc_index count, Size y_side, Size b, Size y, mc_index N, mc_index O, mc_index L) {
    POSITIVE(count, O);
    AT_MOST(count, count, product({N, O}));
    HOLDS(y, product({count, L}));
    HOLDS(y_side, count > 0 ? product({N, O, L}) : 0);
    HOLDS(b, count > 0 && L > 0 ? O : 0);
}

// dy_side (O, N, L) has count rows (o, n) of L entries, each read from dy (N, O, L).
MC_SIZES(nchw_to_side_by_side)(mc_index count, Size dy, Size dy_side, mc_index N, mc_index O, mc_index L) {
    POSITIVE(count, N);
    AT_MOST(count, count, product({N, O}));
    HOLDS(dy_side, product({count, L}));
    HOLDS(dy, count > 0 ? product({N, O, L}) : 0);
}

// y (N, O, L) has count = N*O*L entries (whole images: the kernel walks count / (O*L) of them); b (O,).
MC_SIZES(bias_forward)(mc_index count, Size y, Size b, mc_index O, mc_index L) {
    POSITIVE(count, O); POSITIVE(count, L);
    if (count > 0 && count % product({O, L}) != 0)
        throw SizeError{"count (" + std::to_string(count) + ") must be a whole number of images of O*L = " +
                        std::to_string(product({O, L})) + " entries"};
    HOLDS(y, count);
    HOLDS(b, count > 0 ? O : 0);
}

// x (R, L)  ->  out (R, S): count = R*S partial sums, each over every S-th entry of its row.
MC_SIZES(sum_rows)(mc_index count, Size x, Size out, mc_index L, mc_index S) {
    POSITIVE(count, S);
    HOLDS(x, product({groups_of(count, S), L}));
    HOLDS(out, count);
}

// x (R, count)  ->  out (count,).
MC_SIZES(sum_cols)(mc_index count, Size x, Size out, mc_index R) {
    HOLDS(x, product({R, count}));
    HOLDS(out, count);
}

// y, argmax (N, C, OH, OW) have count rows (n, c, oy) of OW outputs; x the same planes, of H*W.
MC_SIZES(max_pool_forward)(mc_index count, Size x, Size y, Size argmax, mc_index H, mc_index W, mc_index, mc_index,
                           mc_index, mc_index, mc_index, mc_index, mc_index OH, mc_index OW) {
    POSITIVE(count, OH);
    HOLDS(y, product({count, OW}));
    HOLDS(argmax, product({count, OW}));
    HOLDS(x, OW > 0 ? product({groups_of(count, OH), H, W}) : 0);
}

// dx (N, C, H, W) has count rows (n, c, y) of W pixels; dy and argmax the same planes, of OH*OW.
MC_SIZES(max_pool_backward)(mc_index count, Size dy, Size argmax, Size dx, mc_index H, mc_index W, mc_index,
                            mc_index, mc_index sh, mc_index, mc_index, mc_index, mc_index OH, mc_index OW) {
    POSITIVE(count, H); POSITIVE(count, sh);
    HOLDS(dx, product({count, W}));
    HOLDS(dy, product({groups_of(count, H), OH, OW}));
    HOLDS(argmax, product({groups_of(count, H), OH, OW}));
}

// y (N, C, OH, OW) has count entries; x the same planes, of H*W (the padding at the bottom and
// right and count_include_pad only change the divisors).
MC_SIZES(avg_pool_forward)(mc_index count, Size x, Size y, mc_index H, mc_index W, mc_index, mc_index, mc_index,
                           mc_index, mc_index, mc_index, mc_index OH, mc_index OW, mc_index, mc_index, mc_index) {
    POSITIVE(count, OH); POSITIVE(count, OW);
    HOLDS(y, count);
    HOLDS(x, product({groups_of(count, product({OH, OW})), H, W}));
}

// dx (N, C, H, W) has count entries; dy the same planes, of OH*OW.
MC_SIZES(avg_pool_backward)(mc_index count, Size dy, Size dx, mc_index H, mc_index W, mc_index, mc_index,
                            mc_index sh, mc_index sw, mc_index, mc_index, mc_index OH, mc_index OW, mc_index, mc_index,
                            mc_index) {
    POSITIVE(count, H); POSITIVE(count, W); POSITIVE(count, sh); POSITIVE(count, sw);
    HOLDS(dx, count);
    HOLDS(dy, product({groups_of(count, product({H, W})), OH, OW}));
}

// scale (N, C, HW) has count planes (n, c) of HW; x is read across its images' channels, so whole images.
MC_SIZES(lrn_scale)(mc_index count, Size x, Size scale, mc_index C, mc_index HW, mc_index, T, T) {
    POSITIVE(count, C);
    HOLDS(x, HW > 0 ? product({groups_of(count, C), C, HW}) : 0);
    HOLDS(scale, product({count, HW}));
}

// Element-wise: every array has count entries.
MC_SIZES(lrn_forward)(mc_index count, Size x, Size scale, Size y, T) {
    HOLDS(x, count); HOLDS(scale, count); HOLDS(y, count);
}
MC_SIZES(lrn_backward_terms)(mc_index count, Size y, Size scale, Size dy, Size ratio, Size dx, T) {
    HOLDS(y, count); HOLDS(scale, count); HOLDS(dy, count); HOLDS(ratio, count); HOLDS(dx, count);
}

// x, dx (N, C, HW) have count planes (n, c) of HW; ratio is read across channels, so whole images.
MC_SIZES(lrn_backward)(mc_index count, Size x, Size ratio, Size dx, mc_index C, mc_index HW, mc_index, T, T) {
    POSITIVE(count, C);
    HOLDS(x, product({count, HW}));
    HOLDS(ratio, HW > 0 ? product({groups_of(count, C), C, HW}) : 0);
    HOLDS(dx, product({count, HW}));
}

// The channels a per-element kernel over (N, C, L) reaches: those of its first count elements.
inline mc_index channels_reached(mc_index count, mc_index C, mc_index L) {
    mc_index rows = groups_of(count, L);
    return rows < C ? rows : C;
}

// x (N, C, L) read whole; mean, var (C,): count = the channels, one thread each, so count <= C.
MC_SIZES(batch_norm_statistics)(mc_index count, Size x, Size mean, Size var, mc_index N, mc_index C, mc_index L) {
    POSITIVE(count, N); POSITIVE(count, L); AT_MOST(count, count, C);
    HOLDS(x, product({N, C, L}));
    HOLDS(mean, count);
    HOLDS(var, count);
}

// x, y (N, C, L) have count entries; mean, var, weight, bias one per channel reached.
MC_SIZES(batch_norm_forward)(mc_index count, Size x, Size mean, Size var, Size weight, Size bias, Size y, mc_index C,
                             mc_index L, T) {
    POSITIVE(count, C); POSITIVE(count, L);
    mc_index channels = channels_reached(count, C, L);
    HOLDS(x, count); HOLDS(y, count);
    HOLDS(mean, channels); HOLDS(var, channels); HOLDS(weight, channels); HOLDS(bias, channels);
}

// x, dy (N, C, L) read whole; mean, var, dweight, dbias (C,): one thread per channel, count <= C.
MC_SIZES(batch_norm_backward_reduce)(mc_index count, Size x, Size dy, Size mean, Size var, Size dweight, Size dbias,
                                     mc_index N, mc_index C, mc_index L, T) {
    POSITIVE(count, N); POSITIVE(count, L); AT_MOST(count, count, C);
    HOLDS(x, product({N, C, L})); HOLDS(dy, product({N, C, L}));
    HOLDS(mean, count); HOLDS(var, count); HOLDS(dweight, count); HOLDS(dbias, count);
}

// x, dy, dx (N, C, L) have count entries; the (C,) arrays one per channel reached; M divides.
MC_SIZES(batch_norm_backward)(mc_index count, Size x, Size dy, Size mean, Size var, Size weight, Size dweight,
                              Size dbias, Size dx, mc_index C, mc_index L, mc_index M, T, mc_index) {
    POSITIVE(count, C); POSITIVE(count, L); POSITIVE(count, M);
    mc_index channels = channels_reached(count, C, L);
    HOLDS(x, count); HOLDS(dy, count); HOLDS(dx, count);
    HOLDS(mean, channels); HOLDS(var, channels); HOLDS(weight, channels); HOLDS(dweight, channels);
    HOLDS(dbias, channels);
}

// count samples (N, D): labels, loss, counted (count,); log_probs (N, C, D) of the images reached;
// weight (C,) (read only at labels in [0, C)).
MC_SIZES(nll_loss_forward)(mc_index count, Size log_probs, Size labels, Size weight, Size loss, Size counted,
                           mc_index C, mc_index D, mc_index) {
    POSITIVE(count, C); POSITIVE(count, D);
    HOLDS(labels, count); HOLDS(loss, count); HOLDS(counted, count);
    HOLDS(log_probs, product({groups_of(count, D), C, D}));
    HOLDS(weight, count > 0 ? C : 0);
}

// dlog_probs (N, C, D) has count entries; labels and dloss one per sample (N, D) of the images reached.
MC_SIZES(nll_loss_backward)(mc_index count, Size labels, Size weight, Size dloss, Size dlog_probs, mc_index C,
                            mc_index D, mc_index) {
    POSITIVE(count, C); POSITIVE(count, D);
    HOLDS(dlog_probs, count);
    HOLDS(labels, product({groups_of(count, product({C, D})), D}));
    HOLDS(dloss, product({groups_of(count, product({C, D})), D}));
    HOLDS(weight, count > 0 ? C : 0);
}

// The squared error of mse_loss, element-wise: every array has count entries.
MC_SIZES(squared_error_forward)(mc_index count, Size x, Size target, Size out) {
    HOLDS(x, count); HOLDS(target, count); HOLDS(out, count);
}
MC_SIZES(squared_error_backward)(mc_index count, Size x, Size target, Size dloss, Size dx) {
    HOLDS(x, count); HOLDS(target, count); HOLDS(dloss, count); HOLDS(dx, count);
}
// Element-wise: every array has count entries.
MC_SIZES(relu_forward)(mc_index count, Size x, Size y, T) {
    HOLDS(x, count); HOLDS(y, count);
}
MC_SIZES(relu_backward)(mc_index count, Size x, Size dy, Size dx, T) {
    HOLDS(x, count); HOLDS(dy, count); HOLDS(dx, count);
}
// offset (the global index of the first element: a data-parallel rank's slice of a batch)
// only picks which hash draws are used; it touches no memory.
MC_SIZES(dropout_forward)(mc_index count, Size x, Size y, unsigned int, T, unsigned int, mc_index) {
    HOLDS(x, count); HOLDS(y, count);
}
MC_SIZES(dropout_backward)(mc_index count, Size dy, Size dx, unsigned int, T, unsigned int, mc_index) {
    HOLDS(dy, count); HOLDS(dx, count);
}

// logits (N, K)  ->  part_max, part_sum (N, S): count = N*S slices; slice s of a row starts
// at its class s, so S may not exceed K.
MC_SIZES(softmax_partials)(mc_index count, Size logits, Size part_max, Size part_sum, mc_index K, mc_index S) {
    POSITIVE(count, S); AT_MOST(count, S, K);
    HOLDS(logits, product({groups_of(count, S), K}));
    HOLDS(part_max, count);
    HOLDS(part_sum, count);
}

// count rows: logits (count, K); part_max, part_sum (count, S); labels, row_max, log_sum, row_loss (count,).
MC_SIZES(softmax_cross_entropy_forward)(mc_index count, Size logits, Size labels, Size part_max, Size part_sum,
                                        Size row_max, Size log_sum, Size row_loss, mc_index K, mc_index S) {
    POSITIVE(count, S);
    HOLDS(logits, product({count, K}));
    HOLDS(labels, count);
    HOLDS(part_max, product({count, S}));
    HOLDS(part_sum, product({count, S}));
    HOLDS(row_max, count);
    HOLDS(log_sum, count);
    HOLDS(row_loss, count);
}

// logits, probs (N, K) have count entries; row_max, log_sum one per row.
MC_SIZES(softmax_probs)(mc_index count, Size logits, Size row_max, Size log_sum, Size probs, mc_index K) {
    POSITIVE(count, K);
    HOLDS(logits, count);
    HOLDS(probs, count);
    HOLDS(row_max, groups_of(count, K));
    HOLDS(log_sum, groups_of(count, K));
}

// loss (count,), each entry the sum of partial (S,) divided by N.
MC_SIZES(mean_forward)(mc_index count, Size partial, Size loss, mc_index S, mc_index) {
    HOLDS(partial, count > 0 ? S : 0);
    HOLDS(loss, count);
}

// probs, dlogits (N, K) have count entries; labels one per row; dloss (1,).
MC_SIZES(softmax_cross_entropy_backward)(mc_index count, Size probs, Size labels, Size dloss, Size dlogits, mc_index,
                                         mc_index K) {
    POSITIVE(count, K);
    HOLDS(probs, count);
    HOLDS(dlogits, count);
    HOLDS(labels, groups_of(count, K));
    HOLDS(dloss, count > 0 ? 1 : 0);
}

// Optimizer updates: every array has count entries (SGD without momentum gets the
// parameter itself as its velocity from backends/kernels.py, RMSprop its unused buffers).
MC_SIZES(sgd_update)(mc_index count, Size param, Size grad, Size velocity, T, T, T, mc_index) {
    HOLDS(param, count); HOLDS(grad, count); HOLDS(velocity, count);
}
MC_SIZES(adam_update)(mc_index count, Size param, Size grad, Size m, Size v, T, T, T, T, T, T, T, T, T) {
    HOLDS(param, count); HOLDS(grad, count); HOLDS(m, count); HOLDS(v, count);
}
MC_SIZES(adamw_update)(mc_index count, Size param, Size grad, Size m, Size v, T, T, T, T, T, T, T, T, T) {
    HOLDS(param, count); HOLDS(grad, count); HOLDS(m, count); HOLDS(v, count);
}
// grad_avg and buffer are the parameter itself when unused (not centered, no momentum).
MC_SIZES(rmsprop_update)(mc_index count, Size param, Size grad, Size square_avg, Size grad_avg, Size buffer,
                         T, T, T, T, T, T, mc_index) {
    HOLDS(param, count); HOLDS(grad, count); HOLDS(square_avg, count); HOLDS(grad_avg, count); HOLDS(buffer, count);
}

PYBIND11_MODULE(_host, m) {
    m.doc() = "minicnn's csrc kernels compiled for the CPU (the CUDA grid on OpenMP threads)";
    MC_FOR_EACH_KERNEL(MC_BIND);
    def_launch_settings(m);
    // built by MINICNN_DEBUG_BUILD=1 (setup.py): -O0 -g, for stepping through a kernel with gdb
#ifdef MC_DEBUG_BUILD
    m.attr("debug_build") = true;
#else
    m.attr("debug_build") = false;
#endif
    // the hash itself, so tests can hold it against backends/reference.py bit for bit
    m.def("dropout_hash", [](unsigned int seed, unsigned long long index) {
        return mc_dropout_hash(seed, index);
    });
}
