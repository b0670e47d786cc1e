// Online-softmax attention update (see include/lh_attention.h for the layouts).
#include "lh_attention.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// ---------------------------------------------------------------- reference

void lh_attn_update_ref(const float *q, int32_t ldq, int32_t nq, int32_t D,
                        const float *Kt, const float *V, int32_t ldv, int32_t n, const int32_t *limit,
                        float scale, lh_softmax_state *state, float *acc, int32_t lda) {
    for (int32_t qi = 0; qi < nq; qi++) {
        const float *qv = q + (int64_t)qi * ldq;
        float *a = acc + (int64_t)qi * lda;
        int32_t end = limit ? (limit[qi] < n ? limit[qi] : n) : n;
        for (int32_t j = 0; j < end; j++) {
            const float *t = Kt + (int64_t)(j / 16) * 16 * D + j % 16;
            float s = 0;
            for (int32_t d = 0; d < D; d++) s += qv[d] * t[d * 16];
            s *= scale;
            lh_softmax_state *st = &state[qi];
            if (s > st->m) {
                float c = expf(st->m - s);  // exp(-inf) = 0 on the first key
                st->l *= c;
                for (int32_t d = 0; d < D; d++) a[d] *= c;
                st->m = s;
            }
            float p = expf(s - st->m);
            st->l += p;
            const float *v = V + (int64_t)j * ldv;
            for (int32_t d = 0; d < D; d++) a[d] += p * v[d];
        }
    }
}

// ---------------------------------------------------------------- AVX-512

#if defined(__x86_64__)
#define LH_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))

// exp(x) for x ≤ 0 (scores minus their max), Cephes-style: 2^n · p(r), r = x - n·ln2, |r| ≤ ln2/2.
// Relative error ~2e-7; inputs below -87 flush to 0.
LH_AVX512 static inline __m512 exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.0f);
    __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_mask_mov_ps(y, tiny, _mm512_setzero_ps());
}

// Up to 4 queries at once: each K tile row and V row loaded once serves all of them.
LH_AVX512 static void attn_update_avx512(const float *q, int32_t ldq, int32_t nq, int32_t D,
                                         const float *Kt, const float *V, int32_t ldv, int32_t n,
                                         const int32_t *limit, float scale, lh_softmax_state *state,
                                         float *acc, int32_t lda) {
    for (int32_t q0 = 0; q0 < nq; q0 += 4) {
        const int32_t g = nq - q0 < 4 ? nq - q0 : 4;
        int32_t end[4];
        int32_t maxEnd = 0;
        for (int32_t i = 0; i < g; i++) {
            end[i] = limit ? (limit[q0 + i] < n ? limit[q0 + i] : n) : n;
            if (end[i] > maxEnd) maxEnd = end[i];
        }
        const float *qs[4];
        float *as[4];
        for (int32_t i = 0; i < g; i++) {
            qs[i] = q + (int64_t)(q0 + i) * ldq;
            as[i] = acc + (int64_t)(q0 + i) * lda;
        }
        const __m512 vscale = _mm512_set1_ps(scale);
        for (int32_t t0 = 0; t0 < maxEnd; t0 += 16) {
            const float *T = Kt + (int64_t)(t0 / 16) * 16 * D;
            __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int32_t d = 0; d < D; d++) {
                __m512 kv = _mm512_loadu_ps(T + d * 16);
                for (int32_t i = 0; i < g; i++) s[i] = _mm512_fmadd_ps(_mm512_set1_ps(qs[i][d]), kv, s[i]);
            }
            float p[4][16] __attribute__((aligned(64)));
            int32_t cnt[4];
            for (int32_t i = 0; i < g; i++) {
                int32_t c = end[i] - t0;
                c = c < 0 ? 0 : (c > 16 ? 16 : c);
                cnt[i] = c;
                if (c == 0) continue;
                __mmask16 valid = (__mmask16)((1u << c) - 1u);
                __m512 si = _mm512_mul_ps(s[i], vscale);
                float mt = _mm512_mask_reduce_max_ps(valid, si);
                lh_softmax_state *st = &state[q0 + i];
                if (mt > st->m) {
                    float cf = expf(st->m - mt);
                    st->l *= cf;
                    __m512 vc = _mm512_set1_ps(cf);
                    for (int32_t d = 0; d < D; d += 16)
                        _mm512_storeu_ps(as[i] + d, _mm512_mul_ps(_mm512_loadu_ps(as[i] + d), vc));
                    st->m = mt;
                }
                __m512 pe = _mm512_maskz_mov_ps(valid, exp512(_mm512_sub_ps(si, _mm512_set1_ps(st->m))));
                st->l += _mm512_reduce_add_ps(pe);
                _mm512_store_ps(p[i], pe);
            }
            const int32_t tileEnd = maxEnd - t0 < 16 ? maxEnd - t0 : 16;
            for (int32_t d = 0; d < D; d += 16) {
                __m512 a[4];
                for (int32_t i = 0; i < g; i++) a[i] = _mm512_loadu_ps(as[i] + d);
                for (int32_t j = 0; j < tileEnd; j++) {
                    __m512 v = _mm512_loadu_ps(V + (int64_t)(t0 + j) * ldv + d);
                    for (int32_t i = 0; i < g; i++)
                        if (j < cnt[i]) a[i] = _mm512_fmadd_ps(_mm512_set1_ps(p[i][j]), v, a[i]);
                }
                for (int32_t i = 0; i < g; i++) _mm512_storeu_ps(as[i] + d, a[i]);
            }
        }
    }
}
#endif

// ---------------------------------------------------------------- chunk selection scores

// Products and sums stay separate operations (bit-identical paths and the Swift reference).
#pragma STDC FP_CONTRACT OFF

void lh_chunk_scores_ref(const float *q, int32_t D, const float *slab, int32_t stride, const int32_t *rows,
                         int32_t subs, int32_t m, float *out) {
    for (int32_t x = 0; x < m; x++) {
        float best = -INFINITY;
        for (int32_t s = 0; s < subs; s++) {
            float acc = 0;
            for (int32_t d = 0; d < D; d++) {
                float p = q[d] * slab[(int64_t)rows[s * D + d] * stride + x];
                acc = acc + p;
            }
            best = acc > best ? acc : best;
        }
        out[x] = best;
    }
}

#if defined(__x86_64__)
// 64 chunks per pass in four accumulators (each slab row is streamed once per pass), then 16, then
// a masked tail. Separate multiply and add: the same rounding as the reference.
LH_AVX512 static void chunk_scores_avx512(const float *q, int32_t D, const float *slab, int32_t stride,
                                          const int32_t *rows, int32_t subs, int32_t m, float *out) {
    int32_t x = 0;
    for (; x + 64 <= m; x += 64) {
        __m512 b0 = _mm512_set1_ps(-INFINITY), b1 = b0, b2 = b0, b3 = b0;
        for (int32_t s = 0; s < subs; s++) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            const int32_t *r = rows + s * D;
            for (int32_t d = 0; d < D; d++) {
                const float *row = slab + (int64_t)r[d] * stride + x;
                __m512 qd = _mm512_set1_ps(q[d]);
                a0 = _mm512_add_ps(a0, _mm512_mul_ps(qd, _mm512_loadu_ps(row)));
                a1 = _mm512_add_ps(a1, _mm512_mul_ps(qd, _mm512_loadu_ps(row + 16)));
                a2 = _mm512_add_ps(a2, _mm512_mul_ps(qd, _mm512_loadu_ps(row + 32)));
                a3 = _mm512_add_ps(a3, _mm512_mul_ps(qd, _mm512_loadu_ps(row + 48)));
            }
            b0 = _mm512_max_ps(b0, a0);
            b1 = _mm512_max_ps(b1, a1);
            b2 = _mm512_max_ps(b2, a2);
            b3 = _mm512_max_ps(b3, a3);
        }
        _mm512_storeu_ps(out + x, b0);
        _mm512_storeu_ps(out + x + 16, b1);
        _mm512_storeu_ps(out + x + 32, b2);
        _mm512_storeu_ps(out + x + 48, b3);
    }
    for (; x < m; x += 16) {
        const __mmask16 k = m - x >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (m - x)) - 1);
        __m512 b = _mm512_set1_ps(-INFINITY);
        for (int32_t s = 0; s < subs; s++) {
            __m512 a = _mm512_setzero_ps();
            const int32_t *r = rows + s * D;
            for (int32_t d = 0; d < D; d++) {
                const float *row = slab + (int64_t)r[d] * stride + x;
                a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(q[d]), _mm512_maskz_loadu_ps(k, row)));
            }
            b = _mm512_max_ps(b, a);
        }
        _mm512_mask_storeu_ps(out + x, k, b);
    }
}
#endif

// ---------------------------------------------------------------- dispatch

// Chosen once, lazily, by whichever thread calls first; an atomic so two pool workers
// racing on the first call are defined behaviour (both compute the same answer).
static _Atomic int attn_path = -1;  // 0 reference, 1 avx512

static int choose_path(void) {
    const char *forced = getenv("LONGHEADS_KERNEL");
    if (forced && strcmp(forced, "scalar") == 0) return 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return 1;
#endif
    return 0;
}

int32_t lh_attn_is_avx512(void) {
    int p = atomic_load_explicit(&attn_path, memory_order_relaxed);
    if (p < 0) {
        p = choose_path();
        atomic_store_explicit(&attn_path, p, memory_order_relaxed);
    }
    return p == 1;
}

void lh_attn_update(const float *q, int32_t ldq, int32_t nq, int32_t D,
                    const float *Kt, const float *V, int32_t ldv, int32_t n, const int32_t *limit,
                    float scale, lh_softmax_state *state, float *acc, int32_t lda) {
#if defined(__x86_64__)
    if (D % 16 == 0 && lh_attn_is_avx512()) {
        attn_update_avx512(q, ldq, nq, D, Kt, V, ldv, n, limit, scale, state, acc, lda);
        return;
    }
#endif
    lh_attn_update_ref(q, ldq, nq, D, Kt, V, ldv, n, limit, scale, state, acc, lda);
}

void lh_chunk_scores(const float *q, int32_t D, const float *slab, int32_t stride, const int32_t *rows,
                     int32_t subs, int32_t m, float *out) {
#if defined(__x86_64__)
    if (lh_attn_is_avx512()) {
        chunk_scores_avx512(q, D, slab, stride, rows, subs, m, out);
        return;
    }
#endif
    lh_chunk_scores_ref(q, D, slab, stride, rows, subs, m, out);
}

// ---------------------------------------------------------------- attention over KIVI-encoded pages
//
// The q8/q4 pages of the store (lh_attention.h, lh_kivi_page) are read by the attention directly: per
// 16-key tile, the tile's keys and the same tokens' value rows are dequantized into stack scratch
// (2·16·D floats, 8 KB at D = 64: L1-resident) and folded at once by the float kernel of this file,
// so a chunk is never expanded to floats in memory. Dequantization is min + code · scale as a product
// and then a sum (FP_CONTRACT is off from the chunk-score section on, and the SIMD path uses separate
// multiply and add), exactly as cs_kivi_decode: the tiles hold the very floats a decoded page would,
// and each query's softmax sees the same tiles in the same order, so results are bit-identical to
// decode-then-attend.

#define LH_KIVI_KEY_TILES 4  // tiles per key group: one channel over 64 tokens (CS_KIVI_KEY_TILES)
#define LH_KIVI_STACK_D 128  // head widths up to this use stack scratch (16 KB), wider ones the heap
#define LH_KIVI_STACK_Q 256  // queries per call whose per-query ends live on the stack

// IEEE half to float, exact (every half is a float).
static inline float kivi_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float f = (float)m * 5.9604644775390625e-8f;  // subnormal: m · 2^-24, exact
        return sign ? -f : f;
    }
    bits = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112u) << 23) | (m << 13));
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint32_t kivi_code(const uint8_t *codes, int32_t bits, int64_t i) {
    if (bits == 8) return codes[i];
    return (codes[i >> 1] >> ((i & 1) * 4)) & 0x0fu;
}

// Per-query key ends within [0, n) and their maximum.
static int32_t kivi_ends(int32_t nq, int32_t n, const int32_t *limit, int32_t *end) {
    int32_t maxEnd = 0;
    for (int32_t i = 0; i < nq; i++) {
        int32_t e = limit ? (limit[i] < n ? limit[i] : n) : n;
        end[i] = e < 0 ? 0 : e;
        if (end[i] > maxEnd) maxEnd = end[i];
    }
    return maxEnd;
}

// The limits of one tile [t0, t0 + cnt): each query's keys inside it.
static void kivi_tile_limits(int32_t nq, const int32_t *end, int32_t t0, int32_t cnt, int32_t *lim) {
    for (int32_t i = 0; i < nq; i++) {
        int32_t c = end[i] - t0;
        lim[i] = c < 0 ? 0 : (c > cnt ? cnt : c);
    }
}

// Scalar dequantization of tile `tile` of head g: keys as [D][16] into K, value rows of its first `cnt`
// tokens as [cnt][D] into V.
static void kivi_tile_ref(const lh_kivi_page *pg, int32_t g, int32_t D, int32_t tile, int32_t cnt, float *K, float *V) {
    const int32_t w = pg->chunk, G = pg->kvHeads, kg = (w / 16 + LH_KIVI_KEY_TILES - 1) / LH_KIVI_KEY_TILES;
    const int64_t headFloats = (int64_t)w * D;
    const uint16_t *pk = pg->params + 2 * ((int64_t)(g * kg + tile / LH_KIVI_KEY_TILES) * D);
    for (int32_t d = 0; d < D; d++) {
        float mn = kivi_half(pk[2 * d]), sc = kivi_half(pk[2 * d + 1]);
        int64_t base = g * headFloats + (int64_t)tile * 16 * D + (int64_t)d * 16;
        for (int32_t j = 0; j < 16; j++) K[d * 16 + j] = mn + (float)kivi_code(pg->codes, pg->bits, base + j) * sc;
    }
    const uint16_t *pv = pg->params + 2 * ((int64_t)G * kg * D + (int64_t)g * w);
    for (int32_t j = 0; j < cnt; j++) {
        int32_t t = tile * 16 + j;
        float mn = kivi_half(pv[2 * t]), sc = kivi_half(pv[2 * t + 1]);
        int64_t base = ((int64_t)G + g) * headFloats + (int64_t)t * D;
        for (int32_t d = 0; d < D; d++) V[j * D + d] = mn + (float)kivi_code(pg->codes, pg->bits, base + d) * sc;
    }
}

// One decoder of a 16-token tile of K and V, and one float kernel over a tile: the reference pair or the
// AVX-512 pair. The tile loop around them is the same for both (kivi_attn_update).
typedef void (*kivi_tile_fn)(const lh_kivi_page *pg, int32_t g, int32_t D, int32_t tile, int32_t cnt, float *K, float *V);
typedef void (*attn_update_fn)(const float *q, int32_t ldq, int32_t nq, int32_t D, const float *K, const float *V,
                               int32_t ldkv, int32_t n, const int32_t *limit, float scale, lh_softmax_state *state,
                               float *acc, int32_t lda);

// Per tile: dequantize once into stack scratch, then the float kernel over all nq queries.
static void kivi_attn_update(kivi_tile_fn tile_fn, attn_update_fn update_fn,
                             const float *q, int32_t ldq, int32_t nq, int32_t D,
                             const lh_kivi_page *page, int32_t g, int32_t n, const int32_t *limit,
                             float scale, lh_softmax_state *state, float *acc, int32_t lda) {
    if (nq <= 0 || n <= 0) return;
    float stackTile[32 * LH_KIVI_STACK_D] __attribute__((aligned(64)));
    int32_t stackEnds[2 * LH_KIVI_STACK_Q];
    float *K = D <= LH_KIVI_STACK_D ? stackTile : aligned_alloc(64, sizeof(float) * 32 * (size_t)D);
    int32_t *end = nq <= LH_KIVI_STACK_Q ? stackEnds : malloc(sizeof(int32_t) * 2 * (size_t)nq);
    if (!K || !end) abort();
    float *V = K + 16 * D;
    int32_t *lim = end + nq;
    const int32_t maxEnd = kivi_ends(nq, n, limit, end);
    for (int32_t t0 = 0; t0 < maxEnd; t0 += 16) {
        const int32_t cnt = maxEnd - t0 < 16 ? maxEnd - t0 : 16;
        tile_fn(page, g, D, t0 / 16, cnt, K, V);
        kivi_tile_limits(nq, end, t0, cnt, lim);
        update_fn(q, ldq, nq, D, K, V, D, cnt, lim, scale, state, acc, lda);
    }
    if (K != stackTile) free(K);
    if (end != stackEnds) free(end);
}

void lh_attn_update_kivi_ref(const float *q, int32_t ldq, int32_t nq, int32_t D,
                             const lh_kivi_page *page, int32_t g, int32_t n, const int32_t *limit,
                             float scale, lh_softmax_state *state, float *acc, int32_t lda) {
    kivi_attn_update(kivi_tile_ref, lh_attn_update_ref, q, ldq, nq, D, page, g, n, limit, scale, state, acc, lda);
}

#if defined(__x86_64__)
// 16 codes starting at element i (a multiple of 16) as floats.
LH_AVX512 static inline __m512 kivi_codes16(const uint8_t *codes, int32_t bits, int64_t i) {
    if (bits == 8) return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + i))));
    // 8 bytes hold 16 nibbles: element 2k in the low nibble of byte k, 2k+1 in the high one.
    __m128i b = _mm_loadl_epi64((const __m128i *)(codes + i / 2));
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
}

// D a multiple of 16: a key row of 16 tokens and a value row of 16 channels are one vector each. The
// same operations as kivi_tile_ref (product, then sum; no FMA), so the same floats.
LH_AVX512 static void kivi_tile_avx512(const lh_kivi_page *pg, int32_t g, int32_t D, int32_t tile, int32_t cnt, float *K, float *V) {
    const int32_t w = pg->chunk, G = pg->kvHeads, kg = (w / 16 + LH_KIVI_KEY_TILES - 1) / LH_KIVI_KEY_TILES;
    const int64_t headFloats = (int64_t)w * D;
    const uint16_t *pk = pg->params + 2 * ((int64_t)(g * kg + tile / LH_KIVI_KEY_TILES) * D);
    const int64_t kbase = g * headFloats + (int64_t)tile * 16 * D;
    for (int32_t d0 = 0; d0 < D; d0 += 16) {
        // 16 {min, scale} pairs: halves to floats at once, then one broadcast per channel.
        __m512 pair0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(pk + 2 * d0)));
        __m512 pair1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(pk + 2 * d0 + 16)));
        float pf[32] __attribute__((aligned(64)));
        _mm512_store_ps(pf, pair0);
        _mm512_store_ps(pf + 16, pair1);
        for (int32_t k = 0; k < 16; k++) {
            const int32_t d = d0 + k;
            __m512 c = kivi_codes16(pg->codes, pg->bits, kbase + (int64_t)d * 16);
            _mm512_store_ps(K + d * 16, _mm512_add_ps(_mm512_mul_ps(c, _mm512_set1_ps(pf[2 * k + 1])), _mm512_set1_ps(pf[2 * k])));
        }
    }
    const uint16_t *pv = pg->params + 2 * ((int64_t)G * kg * D + (int64_t)g * w);
    for (int32_t j = 0; j < cnt; j++) {
        int32_t t = tile * 16 + j;
        const __m512 mn = _mm512_set1_ps(kivi_half(pv[2 * t])), sc = _mm512_set1_ps(kivi_half(pv[2 * t + 1]));
        int64_t base = ((int64_t)G + g) * headFloats + (int64_t)t * D;
        for (int32_t d = 0; d < D; d += 16)
            _mm512_store_ps(V + j * D + d, _mm512_add_ps(_mm512_mul_ps(kivi_codes16(pg->codes, pg->bits, base + d), sc), mn));
    }
}

// The AVX-512 tile decoder and float kernel (4 queries at a time inside it): a query's operations are
// those of attn_update_avx512 over the decoded page, tile by tile.
static void attn_update_kivi_avx512(const float *q, int32_t ldq, int32_t nq, int32_t D,
                                    const lh_kivi_page *page, int32_t g, int32_t n, const int32_t *limit,
                                    float scale, lh_softmax_state *state, float *acc, int32_t lda) {
    kivi_attn_update(kivi_tile_avx512, attn_update_avx512, q, ldq, nq, D, page, g, n, limit, scale, state, acc, lda);
}
#endif

void lh_attn_update_kivi(const float *q, int32_t ldq, int32_t nq, int32_t D,
                         const lh_kivi_page *page, int32_t g, int32_t n, const int32_t *limit,
                         float scale, lh_softmax_state *state, float *acc, int32_t lda) {
#if defined(__x86_64__)
    if (D % 16 == 0 && lh_attn_is_avx512()) {
        attn_update_kivi_avx512(q, ldq, nq, D, page, g, n, limit, scale, state, acc, lda);
        return;
    }
#endif
    lh_attn_update_kivi_ref(q, ldq, nq, D, page, g, n, limit, scale, state, acc, lda);
}
