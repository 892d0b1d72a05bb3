// im2col_variants.cuh: numbered versions of im2col and col2im, for dev/im2col.py.
//
// Every variant has the signature and the column layout of csrc/im2col.cuh's kernels
// (cols: (C*kh*kw, N, OH*OW), rows (c, ki, kj), columns (n, oy, ox); padding before
// the first row/column pt/pl; dilation dh/dw), so each can stand in for the others,
// and dev/im2col.py checks each against the NumPy reference before it times it.
//
//   1  the first kernels: im2col with one thread per ENTRY of cols, which decodes
//      (c, ki, kj, n, oy, ox) from its index by a chain of six 64-bit divisions;
//      col2im with one thread per pixel that tries all kh*kw taps and asks, with
//      a modulo each, whether some output used it
//   2  Caffe's shape: im2col with one thread per (c, n, oy, ox) that copies its whole
//      kh*kw window (the divisions paid once per window), col2im gathering only over
//      the outputs whose window spans the pixel
//   3  im2col as 2; col2im SCATTERING, the other way round: one thread per column
//      (c, n, oy, ox), as im2col's, adding each of its kh*kw entries into the pixel it
//      came from. Overlapping windows add into the same pixel from different threads,
//      so every add is atomic, and the order of a pixel's adds is whatever order the
//      threads reach it in: not the reference's, and on a GPU not the same from one
//      run to the next. x must hold zeros before the launch. This is why the kernels
//      gather (csrc/im2col.cuh): no atomics, and the same bits every run.
//   4  both kernels in MC_ROW_LOOP (csrc/common.cuh).
//      im2col: a row is output row oy of image n in row (c, ki, kj) of cols, its columns
//      the ox (count = C*kh*kw*N*OH); col2im: a row is input row y of plane (n, c), its
//      columns the pixels (count = N*C*H), each gathering as in 2. On the GPU one thread
//      per entry, as 1 (a warp writes consecutive entries); on the host a thread decodes
//      each row once and walks along it, instead of paying 2's divisions per window
//      (im2col) or per pixel (col2im).
//   5  im2col as 4; the col2im csrc/im2col.cuh ships: one index per INPUT ROW
//      (n, c, y) that collects into its row, tap by tap in row-major order, the run of entries
//      each output row read through that tap (count = N*C*H). The same sums in the same order
//      as 2 and 4, so the same bits; no division per pixel, and with stride 1 a run added to
//      a run. On a GPU one thread per input row instead of per pixel.
//   6  col2im as 5; im2col with one index per row of cols too, copying runs of input rows.
//      Measured and not adopted: 1.0-1.25x on the host (the rows of AlexNet's later layers
//      are 13 entries long), and on a GPU a warp would write 32 rows apart instead of 32
//      neighbouring entries.
//   7  the one csrc/im2col.cuh ships: col2im as 5; im2col in MC_PLANE_LOOP, a plane per
//      (c, ki, kj, n) of OH x OW entries (count = C*kh*kw*N): on the GPU one thread per
//      entry, as 4; on the host the plane's four coordinates are decoded once per plane
//      instead of once per row (2-2.7x less CPU time than 4 on 6x6 and 13x13 outputs).
#pragma once
#include "im2col.cuh"

// ----- variant 1
// x: (N, C, H, W)  ->  cols: (C*kh*kw, N, OH*OW). One thread per entry of cols.
template <typename T>
MC_KERNEL im2col_1(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW;
    // each i is one entry (c, ki, kj, n, oy, ox) of cols, in row-major order
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW;
        mc_index oy = (i / OW) % OH;
        mc_index n = (i / L) % N;
        mc_index kj = (i / (L * N)) % kw;
        mc_index ki = (i / (L * N * kw)) % kh;
        mc_index c = i / (L * N * kw * kh);
        mc_index y = oy * sh - pt + ki * dh;          // the input pixel this entry copies
        mc_index xx = ox * sw - pl + kj * dw;
        bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
        cols[i] = inside ? x[((n * C + c) * H + y) * W + xx] : T(0);
    }
}

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W). One thread per input pixel, gathering.
template <typename T>
MC_KERNEL col2im_1(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW;
    // each i is one input pixel (n, c, y, xx)
    MC_GRID_LOOP(i, count) {
        mc_index xx = i % W;
        mc_index y = (i / W) % H;
        mc_index c = (i / (W * H)) % C;
        mc_index n = i / (W * H * C);
        T sum = T(0);
        // each tap (ki, kj) names at most one output (oy, ox) that read this pixel
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index ty = y + pt - ki * dh;           // = oy * sh when an output used this tap
            if (ty < 0 || ty % sh != 0 || ty / sh >= OH) continue;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index tx = xx + pl - kj * dw;
                if (tx < 0 || tx % sw != 0 || tx / sw >= OW) continue;
                mc_index row = (c * kh + ki) * kw + kj;
                sum += cols[(row * N + n) * L + (ty / sh) * OW + tx / sw];
            }
        }
        x[i] = sum;
    }
}

// ----- variant 2: Caffe's shape, csrc/im2col.cuh's kernels until variant 4 replaced them
// x: (N, C, H, W)  ->  cols: (C*kh*kw, N, OH*OW), rows ordered (c, ki, kj).
// One thread per (c, n, oy, ox), as Caffe's im2col_gpu_kernel: it copies its
// kh*kw window into the kh*kw rows of its column; padding reads as 0.
template <typename T>
MC_KERNEL im2col_2(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each i is one column (c, n, oy, ox); neighbouring threads write neighbouring entries
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW, rest = i / OW;
        mc_index oy = rest % OH;
        rest /= OH;
        mc_index n = rest % N, c = rest / N;
        const T* plane = x + (n * C + c) * H * W;
        T* out = cols + c * kh * kw * NL + n * L + oy * OW + ox;   // row (c, 0, 0) of the column
        // walk the window row by row; each tap goes one row (NL entries) further down
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index y = oy * sh - pt + ki * dh;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index xx = ox * sw - pl + kj * dw;
                bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
                *out = inside ? plane[y * W + xx] : T(0);
                out += NL;
            }
        }
    }
}

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W), the adjoint of im2col:
// x[pixel] = the sum of every column entry that copied that pixel.
// One thread per input pixel GATHERS them, as Caffe's col2im_gpu_kernel: no atomics,
// and a fixed sum order - taps (ki, kj) in row-major order, as the NumPy reference adds them.
template <typename T>
MC_KERNEL col2im_2(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each i is one input pixel (n, c, y, xx)
    MC_GRID_LOOP(i, count) {
        mc_index xx = i % W, rest = i / W;
        mc_index y = rest % H;
        rest /= H;
        mc_index c = rest % C, n = rest / C;
        // the outputs whose window (of extent d*(k-1)+1) spans this pixel, along each axis
        mc_index oy0, oy1, ox0, ox1;
        mc_covering_outputs(y, dh * (kh - 1) + 1, sh, pt, OH, &oy0, &oy1);
        mc_covering_outputs(xx, dw * (kw - 1) + 1, sw, pl, OW, &ox0, &ox1);
        const T* column = cols + c * kh * kw * NL + n * L;       // row (c, 0, 0), image n
        T sum = T(0);
        // the later the output, the earlier its tap: walk outputs backwards so that taps ascend
        for (mc_index oy = oy1 - 1; oy >= oy0; --oy) {
            mc_index ki = mc_tap(y + pt - oy * sh, dh);
            if (ki < 0) continue;                                // between two dilated taps
            for (mc_index ox = ox1 - 1; ox >= ox0; --ox) {
                mc_index kj = mc_tap(xx + pl - ox * sw, dw);
                if (kj < 0) continue;
                sum += column[(ki * kw + kj) * NL + oy * OW + ox];
            }
        }
        x[i] = sum;
    }
}


// ----- variant 3: col2im_3 (its im2col is variant 2's)
// *at += value from many threads at once. On the GPU, atomicAdd (float and double, sm_60
// and newer). On the host, OpenMP's atomic: the same code stays correct on any number
// of threads (two threads' chunks meet inside a channel, whose windows overlap), and
// without OpenMP the pragma is ignored and the one thread adds in order. A lock-prefixed
// add costs even on one thread: that cost is part of what the driver measures.
#ifdef MC_DEVICE_BUILD
template <typename T>
__device__ __forceinline__ void mc_atomic_add(T* at, T value) {
    atomicAdd(at, value);
}
#else
template <typename T>
inline void mc_atomic_add(T* at, T value) {
#pragma omp atomic
    *at += value;
}
#endif

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W), which must hold zeros. One thread per
// column (c, n, oy, ox), SCATTERING its window's kh*kw entries into x.
template <typename T>
MC_KERNEL col2im_3(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each i is one column (c, n, oy, ox), as im2col's threads
    MC_GRID_LOOP(i, count) {
        mc_index ox = i % OW, rest = i / OW;
        mc_index oy = rest % OH;
        rest /= OH;
        mc_index n = rest % N, c = rest / N;
        T* plane = x + (n * C + c) * H * W;
        const T* in = cols + c * kh * kw * NL + n * L + oy * OW + ox;   // row (c, 0, 0) of the column
        // walk the window row by row, each tap one row (NL entries) further down; padding takes nothing
        for (mc_index ki = 0; ki < kh; ++ki) {
            mc_index y = oy * sh - pt + ki * dh;
            for (mc_index kj = 0; kj < kw; ++kj) {
                mc_index xx = ox * sw - pl + kj * dw;
                if (y >= 0 && y < H && xx >= 0 && xx < W) mc_atomic_add(plane + y * W + xx, *in);
                in += NL;
            }
        }
    }
}

// ----- variant 4: both in MC_ROW_LOOP (csrc/im2col.cuh's until variants 5 and 7 replaced them)
// x: (N, C, H, W)  ->  cols: (C*kh*kw, N, OH*OW), rows ordered (c, ki, kj).
// In MC_ROW_LOOP (common.cuh): a row is output row oy of image n in row (c, ki, kj) of cols,
// its columns the ox, so count = C*kh*kw*N*OH and entry (row, ox) of cols is row * OW + ox.
// On the GPU each entry is a thread (neighbouring threads write neighbouring entries); on the
// host a thread decodes a row once and copies it along. Padding reads as 0.
template <typename T>
MC_KERNEL im2col_4(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    // each (row, ox) is one entry (c, ki, kj, n, oy, ox) of cols
    MC_ROW_LOOP(row, count, ox, OW) {
        mc_index oy = row % OH, rest = row / OH;
        mc_index n = rest % N;
        rest /= N;
        mc_index kj = rest % kw;
        rest /= kw;
        mc_index ki = rest % kh, c = rest / kh;
        mc_index y = oy * sh - pt + ki * dh;              // the input pixel this entry copies
        mc_index xx = ox * sw - pl + kj * dw;
        bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
        cols[row * OW + ox] = inside ? x[((n * C + c) * H + y) * W + xx] : T(0);
    }
}

// cols: (C*kh*kw, N, OH*OW)  ->  x: (N, C, H, W), the adjoint of im2col:
// x[pixel] = the sum of every column entry that copied that pixel.
// Each pixel GATHERS them, as Caffe's col2im_gpu_kernel: no atomics, and a fixed sum
// order - taps (ki, kj) in row-major order, as the NumPy reference adds them.
// In MC_ROW_LOOP: a row is input row y of plane (n, c), its columns the pixels xx
// (count = N*C*H); the outputs covering the row are worked out once per row on the host.
template <typename T>
MC_KERNEL col2im_4(mc_index count, const T* cols, T* x, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    mc_index L = OH * OW, NL = N * L;
    // each (row, xx) is one input pixel (n, c, y, xx)
    MC_ROW_LOOP(row, count, xx, W) {
        mc_index y = row % H, plane = row / H;
        mc_index c = plane % C, n = plane / C;
        // the outputs whose window (of extent d*(k-1)+1) spans this pixel, along each axis
        mc_index oy0, oy1, ox0, ox1;
        mc_covering_outputs(y, dh * (kh - 1) + 1, sh, pt, OH, &oy0, &oy1);
        mc_covering_outputs(xx, dw * (kw - 1) + 1, sw, pl, OW, &ox0, &ox1);
        const T* column = cols + c * kh * kw * NL + n * L;       // row (c, 0, 0), image n
        T sum = T(0);
        // the later the output, the earlier its tap: walk outputs backwards so that taps ascend
        for (mc_index oy = oy1 - 1; oy >= oy0; --oy) {
            mc_index ki = mc_tap(y + pt - oy * sh, dh);
            if (ki < 0) continue;                                // between two dilated taps
            for (mc_index ox = ox1 - 1; ox >= ox0; --ox) {
                mc_index kj = mc_tap(xx + pl - ox * sw, dw);
                if (kj < 0) continue;
                sum += column[(ki * kw + kj) * NL + oy * OW + ox];
            }
        }
        x[row * W + xx] = sum;
    }
}

// ----- variant 6: im2col with one index per row (c, ki, kj, n, oy) of cols (count = C*kh*kw*N*OH)
// that copies the run of its input row the window's tap reads, zeros where the tap falls in the
// padding; with stride 1 the copy is of one contiguous run to another. Its col2im is 5's.
template <typename T>
MC_KERNEL im2col_6(mc_index count, const T* x, T* cols, mc_index N, mc_index C, mc_index H, mc_index W,
                   mc_index kh, mc_index kw, mc_index sh, mc_index sw, mc_index pt, mc_index pl,
                   mc_index dh, mc_index dw, mc_index OH, mc_index OW) {
    // each i is one row (c, ki, kj, n, oy) of cols, OW entries long
    MC_GRID_LOOP(i, count) {
        mc_index oy = i % OH, rest = i / OH;
        mc_index n = rest % N;
        rest /= N;
        mc_index kj = rest % kw;
        rest /= kw;
        mc_index ki = rest % kh, c = rest / kh;
        T* out = cols + i * OW;
        mc_index y = oy * sh - pt + ki * dh;                 // the input row this tap reads
        mc_index shift = kj * dw - pl, ox0, ox1;             // output ox reads column ox*sw + shift
        mc_outputs_inside(shift, sw, W, OW, &ox0, &ox1);
        if (y < 0 || y >= H) ox0 = ox1 = OW;                 // the whole row is padding
        const T* in = x + ((n * C + c) * H + y) * W;
        for (mc_index ox = 0; ox < ox0; ++ox) out[ox] = T(0);
        for (mc_index ox = ox0; ox < ox1; ++ox) out[ox] = in[ox * sw + shift];
        for (mc_index ox = ox1; ox < OW; ++ox) out[ox] = T(0);
    }
}

// ----- variant 5: im2col_4 and csrc/im2col.cuh's col2im, included above.
// ----- variant 7 is csrc/im2col.cuh's im2col (in MC_PLANE_LOOP) and col2im, included above.
