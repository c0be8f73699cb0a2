/* Compute kernels of sb3-dst's "sparse" backend (sb3_dst/common/sparse_kernels.py compiles and loads them).
 *
 * A sparse linear layer y = x Wᵀ + b keeps W as a dense out × in matrix (SB3 sees an ordinary nn.Linear) and
 * computes on its present connections only, listed in row order (CSR: ptr, src, pos) and in column order (CSC).
 * `pos[k]` is the flat position of connection k in W, so the kernels read the weights where the optimizer
 * writes them and no copy of the values is kept.
 *
 * Activations are feature-major: a batch of B vectors of n features is an n × B row-major matrix (the transpose of
 * torch's B × n), so every connection moves a contiguous row of B values. Accumulators for a tile of the batch stay
 * in vector registers while the connections of one output row stream past them.
 *
 * Written with GCC/Clang vector extensions: the compiler maps them to AVX-512, AVX2 or NEON (-march=native).
 * Every sum is taken in a fixed order, so a run repeats bit for bit on the same machine and build.
 */
#include <math.h>
#include <stdint.h>

#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
#define NACC 8 /* accumulators per batch tile: a tile is NACC * VW batch entries */

typedef float vec __attribute__((vector_size(VW * 4)));
typedef float vec_u __attribute__((vector_size(VW * 4), aligned(4))); /* unaligned loads and stores */
typedef int32_t ivec __attribute__((vector_size(VW * 4)));

static inline vec load(const float *p) { return *(const vec_u *)p; }
static inline void store(float *p, vec v) { *(vec_u *)p = v; }
static inline vec splat(float x) { return (vec){0} + x; }
static inline vec relu_v(vec v) {
    const vec zero = {0};
    return (vec)((ivec)v & (v > zero)); /* comparisons give all-ones lanes where true */
}
static inline float hsum(vec v) {
    float s = 0.0f;
    for (int j = 0; j < VW; j++) s += v[j];
    return s;
}

/* One tile of NV vectors (NV * VW batch columns starting at t) of every row: accumulators in registers while
 * the row's connections stream past them. Narrow tiles keep two sets of accumulators (even and odd connections),
 * so that consecutive multiply-adds do not wait for each other. */
#define SPMM_TILE(NV, SETS)                                                                                         \
    static void spmm_tile_##NV(int64_t n_rows, int64_t batch, int64_t t, const int32_t *ptr, const int32_t *src,   \
                               const int32_t *pos, const float *weight, const float *bias, const float *S, float *D, \
                               int32_t relu) {                                                                     \
        for (int64_t r = 0; r < n_rows; r++) {                                                                     \
            vec acc[SETS][NV];                                                                                     \
            _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++) {                                                \
                acc[0][j] = splat(bias ? bias[r] : 0.0f);                                                          \
                if (SETS > 1) acc[SETS - 1][j] = splat(0.0f);                                                      \
            }                                                                                                      \
            int32_t k = ptr[r];                                                                                    \
            const int32_t end = ptr[r + 1];                                                                        \
            for (; k + SETS <= end; k += SETS) {                                                                   \
                _Pragma("GCC unroll 2") for (int h = 0; h < SETS; h++) {                                           \
                    const vec w = splat(weight[pos[k + h]]);                                                       \
                    const float *s = S + (int64_t)src[k + h] * batch + t;                                          \
                    _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++) acc[h][j] += w * load(s + j * VW);       \
                }                                                                                                  \
            }                                                                                                      \
            for (; k < end; k++) {                                                                                 \
                const vec w = splat(weight[pos[k]]);                                                               \
                const float *s = S + (int64_t)src[k] * batch + t;                                                  \
                _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++) acc[0][j] += w * load(s + j * VW);           \
            }                                                                                                      \
            float *out = D + r * batch + t;                                                                        \
            _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++) {                                                \
                const vec v = SETS > 1 ? acc[0][j] + acc[SETS - 1][j] : acc[0][j];                                 \
                store(out + j * VW, relu ? relu_v(v) : v);                                                         \
            }                                                                                                      \
        }                                                                                                          \
    }
SPMM_TILE(8, 1)
SPMM_TILE(4, 1)
SPMM_TILE(2, 2)
SPMM_TILE(1, 2)

/* D[r, :] = bias[r] + Σ_{k in row r} W[pos[k]] · S[src[k], :]   (then max(·, 0) if relu)
 * Forward product (rows = outputs, CSR) and gradient w.r.t. the input (rows = inputs, CSC: bias NULL).
 * Batch tiles are the outer loop: a tile of S (n_src x tile) stays in the L2 cache while every row reads it. The
 * batch is covered by tiles of 8, 4, 2 and 1 vectors, then fewer than VW columns with scalar accumulators. */
void sb3dst_spmm(int64_t n_rows, int64_t batch, const int32_t *ptr, const int32_t *src, const int32_t *pos,
                 const float *weight, const float *bias, const float *S, float *D, int32_t relu) {
    int64_t t = 0;
    for (; t + 8 * VW <= batch; t += 8 * VW) spmm_tile_8(n_rows, batch, t, ptr, src, pos, weight, bias, S, D, relu);
    if (t + 4 * VW <= batch) {
        spmm_tile_4(n_rows, batch, t, ptr, src, pos, weight, bias, S, D, relu);
        t += 4 * VW;
    }
    if (t + 2 * VW <= batch) {
        spmm_tile_2(n_rows, batch, t, ptr, src, pos, weight, bias, S, D, relu);
        t += 2 * VW;
    }
    if (t + VW <= batch) {
        spmm_tile_1(n_rows, batch, t, ptr, src, pos, weight, bias, S, D, relu);
        t += VW;
    }
    const int64_t rest = batch - t;
    if (rest == 0) return;
    for (int64_t r = 0; r < n_rows; r++) {
        float acc[VW];
        for (int64_t j = 0; j < rest; j++) acc[j] = bias ? bias[r] : 0.0f;
        for (int32_t k = ptr[r]; k < ptr[r + 1]; k++) {
            const float w = weight[pos[k]];
            const float *s = S + (int64_t)src[k] * batch + t;
            for (int64_t j = 0; j < rest; j++) acc[j] += w * s[j];
        }
        float *out = D + r * batch + t;
        for (int64_t j = 0; j < rest; j++) out[j] = (relu && !(acc[j] > 0.0f)) ? 0.0f : acc[j];
    }
}

/* G[pos[k]] = Σ_b GY[r, b] · X[src[k], b] for every connection k of row r (the weight gradient at present
 * connections only: a sampled dense-dense product). Four connections share each load of GY. */
void sb3dst_sddmm(int64_t n_rows, int64_t batch, const int32_t *ptr, const int32_t *src, const int32_t *pos,
                  const float *GY, const float *X, float *G) {
    const int64_t wide = batch - batch % (2 * VW);         /* columns taken two vectors at a time */
    const int64_t narrow = batch - batch % VW;            /* then at most one more vector */
    for (int64_t r = 0; r < n_rows; r++) {
        const float *gy = GY + r * batch;
        int32_t k = ptr[r];
        const int32_t end = ptr[r + 1];
        for (; k + 4 <= end; k += 4) {
            const float *x0 = X + (int64_t)src[k] * batch, *x1 = X + (int64_t)src[k + 1] * batch;
            const float *x2 = X + (int64_t)src[k + 2] * batch, *x3 = X + (int64_t)src[k + 3] * batch;
            vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
            for (int64_t b = 0; b < wide; b += 2 * VW) {
                const vec g = load(gy + b), h = load(gy + b + VW);
                a0 += g * load(x0 + b);
                a1 += g * load(x1 + b);
                a2 += g * load(x2 + b);
                a3 += g * load(x3 + b);
                c0 += h * load(x0 + b + VW);
                c1 += h * load(x1 + b + VW);
                c2 += h * load(x2 + b + VW);
                c3 += h * load(x3 + b + VW);
            }
            if (narrow > wide) {
                const vec g = load(gy + wide);
                a0 += g * load(x0 + wide);
                a1 += g * load(x1 + wide);
                a2 += g * load(x2 + wide);
                a3 += g * load(x3 + wide);
            }
            float s0 = hsum(a0 + c0), s1 = hsum(a1 + c1), s2 = hsum(a2 + c2), s3 = hsum(a3 + c3);
            for (int64_t b = narrow; b < batch; b++) {
                s0 += gy[b] * x0[b];
                s1 += gy[b] * x1[b];
                s2 += gy[b] * x2[b];
                s3 += gy[b] * x3[b];
            }
            G[pos[k]] = s0;
            G[pos[k + 1]] = s1;
            G[pos[k + 2]] = s2;
            G[pos[k + 3]] = s3;
        }
        for (; k < end; k++) {
            const float *x = X + (int64_t)src[k] * batch;
            vec a = {0}, c = {0};
            for (int64_t b = 0; b < wide; b += 2 * VW) {
                a += load(gy + b) * load(x + b);
                c += load(gy + b + VW) * load(x + b + VW);
            }
            if (narrow > wide) a += load(gy + wide) * load(x + wide);
            float s = hsum(a + c);
            for (int64_t b = narrow; b < batch; b++) s += gy[b] * x[b];
            G[pos[k]] = s;
        }
    }
}

/* One Adam (decoupled = 0) or AdamW (decoupled = 1) step at the listed flat positions only, with torch's
 * single-tensor arithmetic: g += λθ (Adam) or θ ← θ(1 − lr·λ) (AdamW); m ← lerp(m, g, 1 − β1);
 * v ← β2·v + (1 − β2)·g²; θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε). */
void sb3dst_adam(int64_t n, const int32_t *restrict pos, float *restrict param, const float *restrict grad,
                 float *restrict exp_avg, float *restrict exp_avg_sq,
                 float decay, float l2, float lerp_weight, float beta2, float one_minus_beta2,
                 float bias_correction2_sqrt, float eps, float negative_step_size) {
    const int small = fabsf(lerp_weight) < 0.5f;
    const float coefficient = small ? lerp_weight : lerp_weight - 1.0f;
    for (int64_t k = 0; k < n; k++) {
        const int32_t i = pos[k];
        const float p = param[i] * decay;
        float g = grad[i];
        if (l2 != 0.0f) g = fmaf(p, l2, g);
        const float m_old = exp_avg[i];
        const float m = fmaf(coefficient, g - m_old, small ? m_old : g);
        const float v = fmaf(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p + (negative_step_size * m) / (sqrtf(v) / bias_correction2_sqrt + eps);
    }
}

/* Batch statistics of feature-major rows (one row of B values per feature), for CrossQ's BatchRenorm: the mean
 * and the unbiased variance, in two passes over each row (the second on centred values, as torch's var). */
static inline float row_sum(const float *x, int64_t batch) {
    const int64_t narrow = batch - batch % VW;
    vec a = {0};
    for (int64_t b = 0; b < narrow; b += VW) a += load(x + b);
    float s = hsum(a);
    for (int64_t b = narrow; b < batch; b++) s += x[b];
    return s;
}

void sb3dst_row_moments(int64_t n_rows, int64_t batch, const float *X, float *mean, float *var) {
    const int64_t narrow = batch - batch % VW;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *x = X + r * batch;
        const float m = row_sum(x, batch) / (float)batch;
        const vec mv = splat(m);
        vec a = {0};
        for (int64_t b = 0; b < narrow; b += VW) {
            const vec c = load(x + b) - mv;
            a += c * c;
        }
        float s = hsum(a);
        for (int64_t b = narrow; b < batch; b++) s += (x[b] - m) * (x[b] - m);
        mean[r] = m;
        var[r] = s / (float)(batch - 1);
    }
}

/* s1[r] = Σ_b G[r, b] and s2[r] = Σ_b G[r, b] · (X[r, b] − centre[r]): the sums a normalisation's backward
 * needs. */
void sb3dst_row_sums(int64_t n_rows, int64_t batch, const float *G, const float *X, const float *centre, float *s1,
                     float *s2) {
    const int64_t narrow = batch - batch % VW;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *g = G + r * batch, *x = X + r * batch;
        const float c = centre[r];
        const vec cv = splat(c);
        vec a = {0}, p = {0};
        for (int64_t b = 0; b < narrow; b += VW) {
            const vec gv = load(g + b);
            a += gv;
            p += gv * (load(x + b) - cv);
        }
        float sa = hsum(a), sp = hsum(p);
        for (int64_t b = narrow; b < batch; b++) {
            sa += g[b];
            sp += g[b] * (x[b] - c);
        }
        s1[r] = sa;
        s2[r] = sp;
    }
}

/* D[r, b] = a[r] · X[r, b] + c[r] · G[r, b] + k[r] (the G term left out when G is NULL): a per-feature affine map
 * of one or two feature-major matrices, a normalisation's forward (G NULL) and backward. */
void sb3dst_row_affine(int64_t n_rows, int64_t batch, const float *a, const float *X, const float *c, const float *G,
                       const float *k, float *D) {
    const int64_t narrow = batch - batch % VW;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *x = X + r * batch;
        float *d = D + r * batch;
        const vec av = splat(a[r]), kv = splat(k[r]);
        if (G) {
            const float *g = G + r * batch;
            const vec cv = splat(c[r]);
            for (int64_t b = 0; b < narrow; b += VW) store(d + b, av * load(x + b) + cv * load(g + b) + kv);
            for (int64_t b = narrow; b < batch; b++) d[b] = a[r] * x[b] + c[r] * g[b] + k[r];
        } else {
            for (int64_t b = 0; b < narrow; b += VW) store(d + b, av * load(x + b) + kv);
            for (int64_t b = narrow; b < batch; b++) d[b] = a[r] * x[b] + k[r];
        }
    }
}
