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

static inline float surrogate(int kind, float x, float w) {
    float a = x / w;
    switch (kind) {
    case 0: { float z = HALF_PI * a; return (0.5f / w) / (1.0f + z * z); }
    case 1: { float s = 1.0f / (1.0f + expf(-a)); return s * (1.0f - s) / w; }
    case 2: { float d = 1.0f + fabsf(a); return 0.5f / w / (d * d); }
    default: { float t = 1.0f - fabsf(a); return t > 0.0f ? t / w : 0.0f; }
    }
}

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

/* gs: [T, M] grad of spikes; gv: [M] grad of the final membrane (may be all zero).
 * Writes dx [T, M], dv0 [M]; returns sum_t dh_t * v_{t-1} (the decay gradient) when want_decay. */
double lif_backward(const float *gs, const float *gv, const float *h, const float *v0,
                    float *dx, float *dv0, int64_t T, int64_t M, float decay, float threshold,
                    int reset, int detach_reset, int kind, float width, int want_decay) {
    int64_t chunks = (M + CHUNK - 1) / CHUNK;
    double ddecay = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : ddecay)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK, n = (M - i0) < CHUNK ? (M - i0) : CHUNK;
        float dv[CHUNK];
        for (int64_t i = 0; i < n; i++) dv[i] = gv[i0 + i];
        double local = 0.0;
        for (int64_t t = T - 1; t >= 0; t--) {
            const float *ht = h + t * M + i0, *gst = gs + t * M + i0;
            const float *hprev = t > 0 ? h + (t - 1) * M + i0 : 0;
            float *dxt = dx + t * M + i0;
#pragma omp simd reduction(+ : local)
            for (int64_t i = 0; i < n; i++) {
                float hh = ht[i];
                float sp = hh >= threshold ? 1.0f : 0.0f;
                float g = surrogate(kind, hh - threshold, width);
                float through_spike = detach_reset ? 0.0f : dv[i] * (reset == 0 ? -threshold : -hh);
                float dh = (gst[i] + through_spike) * g + dv[i] * (reset == 0 ? 1.0f : 1.0f - sp);
                dxt[i] = dh;
                if (want_decay) {
                    float vp;
                    if (hprev) {
                        float hp = hprev[i], spp = hp >= threshold ? 1.0f : 0.0f;
                        vp = reset == 0 ? hp - spp * threshold : hp * (1.0f - spp);
                    } else {
                        vp = v0[i0 + i];
                    }
                    local += (double)(dh * vp);
                }
                dv[i] = dh * decay;
            }
        }
        for (int64_t i = 0; i < n; i++) dv0[i0 + i] = dv[i];
        ddecay += local;
    }
    return ddecay;
}
