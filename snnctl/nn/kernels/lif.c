/* Fused multi-step LIF/IF forward and backward for CPU, time-major [T, M] float32 arrays.
 *
 * Forward keeps the membrane in registers across T and writes the spikes and the pre-reset membrane
 * h (the only thing backward needs); backward runs once in reverse time. Neurons are split into
 * chunks across OpenMP threads; inside a chunk the inner loop runs over neurons so it vectorises.
 *
 * Surrogate kinds: 0 atan, 1 sigmoid, 2 fast_sigmoid, 3 triangle (see snnctl/nn/surrogate.py).
 * Built by the set-up (make setup) into _lif.so and called through ctypes.
 */
#include <math.h>
#include <stdint.h>

#define CHUNK 512
#define HALF_PI 1.57079632679489661923f

/* x, s, h: [T, M]; v0: [M] (in), v_out: [M] (out). reset: 0 subtract, 1 zero. */
void lif_forward(const float *x, const float *v0, float *s, float *h, float *v_out,
                 int64_t T, int64_t M, float decay, float threshold, int reset) {
    int64_t chunks = (M + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK, n = (M - i0) < CHUNK ? (M - i0) : CHUNK;
        float v[CHUNK];
        for (int64_t i = 0; i < n; i++) v[i] = v0[i0 + i];
        for (int64_t t = 0; t < T; t++) {
            const float *xt = x + t * M + i0;
            float *st = s + t * M + i0, *ht = h + t * M + i0;
#pragma omp simd
            for (int64_t i = 0; i < n; i++) {
                float hh = decay * v[i] + xt[i];
                float sp = hh >= threshold ? 1.0f : 0.0f;
                ht[i] = hh;
                st[i] = sp;
                v[i] = reset == 0 ? hh - sp * threshold : hh * (1.0f - sp);
            }
        }
        for (int64_t i = 0; i < n; i++) v_out[i0 + i] = v[i];
    }
}

/* Surrogate derivative in a = (h - theta) / w; `kind` is a compile-time constant at every call site. */
static inline __attribute__((always_inline)) float sg(int kind, float a, float inv_w) {
    if (kind == 0) return (0.5f * inv_w) / (1.0f + (HALF_PI * a) * (HALF_PI * a));
    if (kind == 1) return inv_w / ((1.0f + expf(-a)) * (1.0f + expf(a)));
    if (kind == 2) return (0.5f * inv_w) / ((1.0f + fabsf(a)) * (1.0f + fabsf(a)));
    return fmaxf(1.0f - fabsf(a), 0.0f) * inv_w;
}

/* One reverse-time pass over a chunk of n neurons. Reset and detach are folded into coefficients:
 *   v_t = h_t - s_t * (k_sub * theta + k_zero * h_t),  so  dv_t/dh_t = 1 - k_zero * s_t  (direct)
 *   and dv_t/ds_t = -(k_sub * theta + k_zero * h_t), dropped (k_through = 0) for a detached reset.
 * `bcast` (constant): the spike gradient is one value for every neuron-step (a plain loss.sum()). */
static inline __attribute__((always_inline)) void backward_chunk(
    int kind, int bcast, const float *restrict gs, const float *restrict h, float *restrict dx,
    float *restrict dv, int64_t T, int64_t M, int64_t i0, int64_t n, float decay, float threshold,
    float inv_w, float k_sub, float k_zero, float k_through) {
    const float g0 = bcast ? gs[0] : 0.0f;
    for (int64_t t = T - 1; t >= 0; t--) {
        const float *restrict ht = h + t * M + i0;
        const float *restrict gst = gs + (bcast ? 0 : t * M + i0);
        float *restrict dxt = dx + t * M + i0;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            float hh = ht[i];
            float sp = hh >= threshold ? 1.0f : 0.0f;
            float g = sg(kind, (hh - threshold) * inv_w, inv_w);
            float gsi = bcast ? g0 : gst[i];
            float dvi = dv[i];
            float dh = (gsi - k_through * dvi * (k_sub * threshold + k_zero * hh)) * g + dvi * (1.0f - k_zero * sp);
            dxt[i] = dh;
            dv[i] = dh * decay;
        }
    }
}

#define DISPATCH(KIND)                                                                                     \
    (bcast ? backward_chunk(KIND, 1, gs, h, dx, dv, T, M, i0, n, decay, threshold, inv_w, k_sub, k_zero, k_through) \
           : backward_chunk(KIND, 0, gs, h, dx, dv, T, M, i0, n, decay, threshold, inv_w, k_sub, k_zero, k_through))

/* The decay gradient needs v_{t-1}; it is only wanted for a learnable leak, so it has its own pass:
 * sum_t dh_t * v_{t-1}, with v_{t-1} recomputed from h_{t-1} (or v0 at t = 0). */
static double decay_grad(const float *dx, const float *h, const float *v0, int64_t T, int64_t M,
                         float threshold, float k_sub, float k_zero) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int64_t i = 0; i < M; i++) {
        double local = (double)dx[i] * v0[i];
        for (int64_t t = 1; t < T; t++) {
            float hp = h[(t - 1) * M + i], sp = hp >= threshold ? 1.0f : 0.0f;
            float vp = hp - sp * (k_sub * threshold + k_zero * hp);
            local += (double)dx[t * M + i] * vp;
        }
        total += local;
    }
    return total;
}

/* gs: grad of spikes, [T, M] (gs_step = M) or one broadcast value (gs_step = 0); gv: [M] grad of the
 * final membrane. Writes dx [T, M] and dv0 [M]; returns the decay gradient when want_decay. */
double lif_backward(const float *gs, int64_t gs_step, const float *gv, const float *h, const float *v0,
                    float *dx, float *dv0, int64_t T, int64_t M, float decay, float threshold,
                    int reset, int detach_reset, int kind, float width, int want_decay) {
    const float k_sub = reset == 0 ? 1.0f : 0.0f, k_zero = 1.0f - k_sub;
    const float k_through = detach_reset ? 0.0f : 1.0f, inv_w = 1.0f / width;
    int64_t chunks = (M + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK, n = (M - i0) < CHUNK ? (M - i0) : CHUNK;
        float dv[CHUNK];
        for (int64_t i = 0; i < n; i++) dv[i] = gv[i0 + i];
        const int bcast = gs_step == 0;
        switch (kind) {
        case 0: DISPATCH(0); break;
        case 1: DISPATCH(1); break;
        case 2: DISPATCH(2); break;
        default: DISPATCH(3); break;
        }
        for (int64_t i = 0; i < n; i++) dv0[i0 + i] = dv[i];
    }
    return want_decay ? decay_grad(dx, h, v0, T, M, threshold, k_sub, k_zero) : 0.0;
}

/* Event-driven y = bias + W x for one input vector x[n_in] of binary spikes, W given transposed as
 * Wt[n_in, n_out] so an active input adds one contiguous row. Only the rows of active inputs are read.
 * Returns the number of active inputs, or -1 (out untouched) when x holds a value other than 0 or 1
 * or more than max_active inputs are active: the caller then takes the dense path. idx: n_in scratch.
 */
int64_t event_linear(const float *x, int64_t n_in, const float *Wt, int64_t n_out, const float *bias,
                     float *out, int64_t max_active, int64_t *idx) {
    int64_t k = 0;
    for (int64_t i = 0; i < n_in; i++) {
        float xi = x[i];
        if (xi == 0.0f) continue;
        if (xi != 1.0f || k >= max_active) return -1;
        idx[k++] = i;
    }
    int64_t chunks = (n_out + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (k * n_out > (1 << 18))
    for (int64_t c = 0; c < chunks; c++) {
        int64_t j0 = c * CHUNK, n = (n_out - j0) < CHUNK ? (n_out - j0) : CHUNK;
        float acc[CHUNK];
        for (int64_t j = 0; j < n; j++) acc[j] = bias ? bias[j0 + j] : 0.0f;
        for (int64_t a = 0; a < k; a++) {
            const float *row = Wt + idx[a] * n_out + j0;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) acc[j] += row[j];
        }
        for (int64_t j = 0; j < n; j++) out[j0 + j] = acc[j];
    }
    return k;
}

/* Logic-gated (ternary) synapses without multiplications: y[r, :] = bias + sum over inputs i with
 * x[r, i] != 0 of select(code[i, :], x[r, i]), where select gives +x for code +1, -x for -1, 0 for 0.
 * codes: [n_in, n_out] int8 (W^T, so an input adds one contiguous row); x: [R, n_in]; y: [R, n_out].
 * Only additions, subtractions and selects: the synaptic path of a logic-gated SNN.
 */
void ternary_accumulate(const float *x, int64_t R, int64_t n_in, const int8_t *codes, int64_t n_out,
                        const float *bias, float *y) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        float *yr = y + r * n_out;
        const float *xr = x + r * n_in;
        for (int64_t j = 0; j < n_out; j++) yr[j] = bias ? bias[j] : 0.0f;
        for (int64_t i = 0; i < n_in; i++) {
            float v = xr[i];
            if (v == 0.0f) continue;
            const int8_t *c = codes + i * n_out;
            float neg = -v;
#pragma omp simd
            for (int64_t j = 0; j < n_out; j++) yr[j] += c[j] > 0 ? v : (c[j] < 0 ? neg : 0.0f);
        }
    }
}
