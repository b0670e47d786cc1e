// AVX-512 VNNI path. One zmm holds 16 interleaved rows x 4 consecutive k as unsigned bytes, so a
// single vpdpbusd multiplies it with a 4-byte group of one token's int8 activations broadcast to
// all lanes (embedded {1to16} broadcast), producing 16 row partial sums. Weight nibbles are
// unpacked once per block and reused for N tokens (and R row tiles share each broadcast).
//
// Per 16 rows x 1 token x 32 k the kernel issues 8 vpdpbusd plus 4 float ops (convert, scale
// product, two FMAs for the d and m terms); on Zen 4 those share the FMA pipes, which is why
// prefill runs at ~65-70% of the vpdpbusd peak (~150 GMAC/s per core measured). Decode (1 token)
// is bound by DRAM bandwidth, so the 4-bit formats keep f16 scales: 20 bytes per 32 weights.
#include "internal.h"

#if LH_X86
#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

INLINE int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// Scales of one tile: d and m for 16 rows.
INLINE TARGET void load_dm(const uint8_t *sp, const int MODE, const int BITS, __m512 *dw,
                           __m512 *mw) {
    if (MODE == LH_SCALES_F32) {
        *dw = _mm512_load_ps((const float *)sp);
        *mw = _mm512_load_ps((const float *)(sp + 64));
    } else {
        *dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)sp));
        if (MODE == LH_SCALES_F16)
            *mw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(sp + 32)));
        else
            *mw = _mm512_mul_ps(*dw, _mm512_set1_ps(-(float)(1 << (BITS - 1))));
    }
}

// R consecutive row tiles starting at rt, N tokens starting at token t of the call.
INLINE TARGET void mk(const lh_mm_args *A, int32_t rt, int32_t t, const int R, const int N,
                      const int BITS, const int MODE) {
    const lh_packed *w = A->w;
    const lh_qact *a = A->a;
    const int32_t nb = w->nblocks;
    const int QB = BITS == 4 ? 256 : 512;
    const int SB = MODE == LH_SCALES_F32 ? 128 : MODE == LH_SCALES_F16 ? 64 : 32;
    const size_t qstride = (size_t)nb * QB, sstride = (size_t)nb * SB; // between row tiles
    const uint8_t *wq = w->qdata + (size_t)rt * qstride;
    const uint8_t *ws = w->sdata + (size_t)rt * sstride;
    const size_t astride = (size_t)a->tokens * 32, dstride = (size_t)a->tokens * 2;
    const int8_t *ap = a->q + (size_t)(A->t0 + t) * 32;
    const float *dp = a->ds + (size_t)(A->t0 + t) * 2;
    const __m512i m4 = _mm512_set1_epi8(0x0F);

    // Fixed-size arrays (not VLAs) so that, with R and N constant after inlining, they live in
    // registers.
    __m512 acc[4][8];
    for (int r = 0; r < R; r++)
        for (int n = 0; n < N; n++) acc[r][n] = _mm512_setzero_ps();

    for (int32_t b = 0; b < nb; b++) {
        __m512i dot[4][8];
        for (int r = 0; r < R; r++)
            for (int n = 0; n < N; n++) dot[r][n] = _mm512_setzero_si512();
        if (BITS == 4) {
            for (int p = 0; p < 4; p++) {
                __m512i lo[4], hi[4];
                for (int r = 0; r < R; r++) {
                    __m512i v = _mm512_load_si512((const void *)(wq + r * qstride + 64 * p));
                    lo[r] = _mm512_and_si512(v, m4);
                    hi[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                }
                for (int n = 0; n < N; n++) {
                    __m512i al = _mm512_set1_epi32(ld32(ap + n * 32 + 4 * p));
                    __m512i ah = _mm512_set1_epi32(ld32(ap + n * 32 + 16 + 4 * p));
                    for (int r = 0; r < R; r++) {
                        dot[r][n] = _mm512_dpbusd_epi32(dot[r][n], lo[r], al);
                        dot[r][n] = _mm512_dpbusd_epi32(dot[r][n], hi[r], ah);
                    }
                }
            }
        } else {
            for (int p = 0; p < 8; p++) {
                __m512i v[4];
                for (int r = 0; r < R; r++)
                    v[r] = _mm512_load_si512((const void *)(wq + r * qstride + 64 * p));
                for (int n = 0; n < N; n++) {
                    __m512i av = _mm512_set1_epi32(ld32(ap + n * 32 + 4 * p));
                    for (int r = 0; r < R; r++)
                        dot[r][n] = _mm512_dpbusd_epi32(dot[r][n], v[r], av);
                }
            }
        }
        for (int r = 0; r < R; r++) {
            __m512 dw, mw;
            load_dm(ws + r * sstride, MODE, BITS, &dw, &mw);
            for (int n = 0; n < N; n++) {
                __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(dp[2 * n]));
                acc[r][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][n]), scale, acc[r][n]);
                acc[r][n] = _mm512_fmadd_ps(mw, _mm512_set1_ps(dp[2 * n + 1]), acc[r][n]);
            }
        }
        wq += QB;
        ws += SB;
        ap += astride;
        dp += dstride;
    }

    for (int r = 0; r < R; r++) {
        int32_t row0 = (rt + r) * 16;
        int32_t valid = w->rows - row0;
        for (int n = 0; n < N; n++) {
            float *o = A->out + (int64_t)(t + n) * A->ldo + row0;
            if (valid >= 16)
                _mm512_storeu_ps(o, acc[r][n]);
            else
                _mm512_mask_storeu_ps(o, (__mmask16)((1u << valid) - 1), acc[r][n]);
        }
    }
}

typedef void (*tile_fn)(const lh_mm_args *, int32_t, int32_t);

// Instantiations: k<bits>_<mode>_<R>_<N>.
#define DEF(B, M, R, N)                                                                       \
    static TARGET void k##B##_##M##_##R##_##N(const lh_mm_args *A, int32_t rt, int32_t t) {   \
        mk(A, rt, t, R, N, B, M);                                                             \
    }
#define DEF2N(B, M, R) DEF(B, M, R, 1) DEF(B, M, R, 2)
#define DEF8N(B, M, R) DEF2N(B, M, R) DEF(B, M, R, 3) DEF(B, M, R, 4) DEF(B, M, R, 5) \
    DEF(B, M, R, 6) DEF(B, M, R, 7) DEF(B, M, R, 8)
#define DEFALL(B, M) DEF8N(B, M, 1) DEF2N(B, M, 2) DEF2N(B, M, 4)
DEFALL(4, 0) DEFALL(4, 1) DEFALL(4, 2) DEFALL(8, 0) DEFALL(8, 1) DEFALL(8, 2)

#define ROW8(B, M, R) {k##B##_##M##_##R##_1, k##B##_##M##_##R##_2, k##B##_##M##_##R##_3, \
    k##B##_##M##_##R##_4, k##B##_##M##_##R##_5, k##B##_##M##_##R##_6, k##B##_##M##_##R##_7, \
    k##B##_##M##_##R##_8}
#define ROW2(B, M, R) {k##B##_##M##_##R##_1, k##B##_##M##_##R##_2}
// Indexed by format (bits == 8) * 3 + scale_mode, then N - 1.
static const tile_fn R1[6][8] = {ROW8(4, 0, 1), ROW8(4, 1, 1), ROW8(4, 2, 1),
                                 ROW8(8, 0, 1), ROW8(8, 1, 1), ROW8(8, 2, 1)};
static const tile_fn R2[6][2] = {ROW2(4, 0, 2), ROW2(4, 1, 2), ROW2(4, 2, 2),
                                 ROW2(8, 0, 2), ROW2(8, 1, 2), ROW2(8, 2, 2)};
static const tile_fn R4[6][2] = {ROW2(4, 0, 4), ROW2(4, 1, 4), ROW2(4, 2, 4),
                                 ROW2(8, 0, 4), ROW2(8, 1, 4), ROW2(8, 2, 4)};

// Blocking, chosen by measurement on Zen 4 (N = 6..12 token tiles perform within noise of each
// other): up to SMALL_TOKENS tokens (decode), 4 row tiles x all tokens per call so that four
// independent weight streams and dot chains are in flight; otherwise 1 row tile x NTILE tokens,
// tokens in chunks of TCHUNK so a chunk's activations stay in L2 while the weight tile stays in L1.
enum { SMALL_TOKENS = 2, NTILE = 8, TCHUNK = 64 };

TARGET void lh_mm_avx512(const lh_mm_args *A, int32_t rt0, int32_t rt1) {
    const int f = (A->w->bits == 8) * 3 + A->w->scale_mode;
    const int32_t T = A->tokens;
    if (T <= SMALL_TOKENS) {
        int32_t rt = rt0;
        for (; rt + 4 <= rt1; rt += 4) R4[f][T - 1](A, rt, 0);
        for (; rt + 2 <= rt1; rt += 2) R2[f][T - 1](A, rt, 0);
        for (; rt < rt1; rt++) R1[f][T - 1](A, rt, 0);
        return;
    }
    const int NT = NTILE, TC = TCHUNK;
    for (int32_t tc = 0; tc < T; tc += TC) {
        int32_t tend = tc + TC < T ? tc + TC : T;
        for (int32_t rt = rt0; rt < rt1; rt++) {
            for (int32_t t = tc; t < tend; t += NT) {
                int32_t n = tend - t < NT ? tend - t : NT;
                R1[f][n - 1](A, rt, t);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization (bit-identical to lh_quant_scalar: same products, nearest-even)

TARGET void lh_quant_avx512(lh_qact *a, const float *x, int64_t ldx, int32_t t0, int32_t t1) {
    const __m512 signmask = _mm512_set1_ps(-0.0f);
    const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
    for (int32_t t = t0; t < t1; t++) {
        for (int32_t b = 0; b < a->nblocks; b++) {
            const float *xb = x + t * ldx + 32 * b;
            __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
            __m512 ax = _mm512_max_ps(_mm512_andnot_ps(signmask, x0), _mm512_andnot_ps(signmask, x1));
            float amax = _mm512_reduce_max_ps(ax);
            float da = amax / 127.0f;
            float id = amax > 0 ? 127.0f / amax : 0.0f;
            __m512 vid = _mm512_set1_ps(id);
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
            __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
            q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
            q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
            size_t i = (size_t)b * a->tokens + t;
            _mm_storeu_si128((__m128i *)(a->q + 32 * i), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(a->q + 32 * i + 16), _mm512_cvtepi32_epi8(q1));
            int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            a->ds[2 * i] = da;
            a->ds[2 * i + 1] = da * (float)sum;
        }
    }
}

#endif
