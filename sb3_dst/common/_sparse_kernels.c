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

/* D[r, :] = bias[r] + Σ_{k in row r} W[pos[k]] · S[src[k], :]   (then max(·, 0) if relu)
 * Forward product (rows = outputs, CSR) and gradient w.r.t. the input (rows = inputs, CSC: bias NULL). */
void sb3dst_spmm(int64_t n_rows, int64_t batch, const int32_t *ptr, const int32_t *src, const int32_t *pos,
                 const float *weight, const float *bias, const float *S, float *D, int32_t relu) {
    const int64_t tile = NACC * VW;
    const int64_t wide = batch - batch % tile;
    /* Batch tiles outside the rows: a tile of S (n_src x tile) stays in the L2 cache while every row reads it. */
    for (int64_t t = 0; t < wide; t += tile) {
        for (int64_t r = 0; r < n_rows; r++) {
            const int32_t start = ptr[r], end = ptr[r + 1];
            vec acc[NACC];
#pragma GCC unroll 16
            for (int j = 0; j < NACC; j++) acc[j] = splat(bias ? bias[r] : 0.0f);
            for (int32_t k = start; k < end; k++) {
                const vec w = splat(weight[pos[k]]);
                const float *s = S + (int64_t)src[k] * batch + t;
#pragma GCC unroll 16
                for (int j = 0; j < NACC; j++) acc[j] += w * load(s + j * VW);
            }
            float *out = D + r * batch + t;
#pragma GCC unroll 16
            for (int j = 0; j < NACC; j++) store(out + j * VW, relu ? relu_v(acc[j]) : acc[j]);
        }
    }
    if (wide == batch) return;
    for (int64_t r = 0; r < n_rows; r++) {
        const int32_t start = ptr[r], end = ptr[r + 1];
        const float b0 = bias ? bias[r] : 0.0f;
        float *out = D + r * batch;
        int64_t t = wide;
        for (; t + VW <= batch; t += VW) {
            vec acc = splat(b0);
            for (int32_t k = start; k < end; k++) acc += splat(weight[pos[k]]) * load(S + (int64_t)src[k] * batch + t);
            store(out + t, relu ? relu_v(acc) : acc);
        }
        for (; t < batch; t++) {
            float acc = b0;
            for (int32_t k = start; k < end; k++) acc += weight[pos[k]] * S[(int64_t)src[k] * batch + t];
            out[t] = (relu && !(acc > 0.0f)) ? 0.0f : acc;
        }
    }
}

/* G[pos[k]] = Σ_b GY[r, b] · X[src[k], b] for every connection k of row r (the weight gradient at present
 * connections only: a sampled dense-dense product). Four connections share each load of GY. */
void sb3dst_sddmm(int64_t n_rows, int64_t batch, const int32_t *ptr, const int32_t *src, const int32_t *pos,
                  const float *GY, const float *X, float *G) {
    const int64_t wide = batch - batch % (2 * VW);
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
            float s0 = hsum(a0 + c0), s1 = hsum(a1 + c1), s2 = hsum(a2 + c2), s3 = hsum(a3 + c3);
            for (int64_t b = wide; b < batch; b++) {
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
            float s = hsum(a + c);
            for (int64_t b = wide; b < batch; b++) s += gy[b] * x[b];
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
