// AVX-512 VNNI path. One zmm holds 16 interleaved rows x 4 consecutive k as unsigned bytes, so a
// single vpdpbusd multiplies it with a 4-byte group of one token's int8 activations broadcast to
// all lanes (embedded {1to16} broadcast), producing 16 row partial sums. Weight nibbles are
// unpacked once per block and reused for N tokens (and R row tiles share each broadcast).
//
// Per 16 rows x 1 token x 32 k the kernel issues 8 vpdpbusd plus 4 float ops (convert, scale
// product, two FMAs for the d and m terms); on Zen 4 the vpdpbusd, multiplies and FMAs share
// the same two pipes (the convert, integer adds/shifts/ands and vpmulld mostly do not), which is
// why prefill runs at ~65-70% of the vpdpbusd peak (~150 GMAC/s per core measured). Decode
// (1 token) is bound by DRAM bandwidth, so the 4-bit formats keep f16 scales: 20 bytes per 32
// weights.
//
// Int16-split activations (two int8 planes) double the vpdpbusd: 16 per 16 rows x 1 token x 32 k,
// the low plane issued right after the high one on the same unpacked weights, combined as
// 254 * high + low in int32 (vpmulld + vpaddd, off the busy pipes) before the same float
// epilogue. 16 + 3 busy ops instead of 8 + 3 bound prefill at ~58% of the int8 speed; measured
// ~56%. The epilogue cannot shrink: d * da * dot needs two products per (row, block, token) and
// the min term a third.
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

// Adds the products of the 16 x 32 weight block at wq (row tiles r < R, qstride apart) with
// the int8 activations of N tokens (token n's block at ap + n * AB) to dot[r][n]; with PL == 2
// also those with the low plane (at + 32) to dlo[r][n], right after the high plane, so each
// unpacked weight vector serves both planes while it is in a register.
INLINE TARGET void dots(__m512i dot[4][8], __m512i dlo[4][8], const uint8_t *wq, size_t qstride,
                        const int8_t *ap, const int AB, const int R, const int N, const int BITS,
                        const int PL) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (BITS == 4) {
        for (int p = 0; p < 4; p++) {
            __m512i lo[4], hi[4];
            for (int r = 0; r < R; r++) {
                __m512i v = _mm512_load_si512((const void *)(wq + r * qstride + 64 * p));
                lo[r] = _mm512_and_si512(v, m4);
                hi[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            for (int n = 0; n < N; n++) {
                for (int l = 0; l < PL; l++) {
                    __m512i al = _mm512_set1_epi32(ld32(ap + n * AB + 32 * l + 4 * p));
                    __m512i ah = _mm512_set1_epi32(ld32(ap + n * AB + 32 * l + 16 + 4 * p));
                    for (int r = 0; r < R; r++) {
                        __m512i *d = l ? &dlo[r][n] : &dot[r][n];
                        *d = _mm512_dpbusd_epi32(*d, lo[r], al);
                        *d = _mm512_dpbusd_epi32(*d, hi[r], ah);
                    }
                }
            }
        }
    } else {
        for (int p = 0; p < 8; p++) {
            __m512i v[4];
            for (int r = 0; r < R; r++)
                v[r] = _mm512_load_si512((const void *)(wq + r * qstride + 64 * p));
            for (int n = 0; n < N; n++) {
                for (int l = 0; l < PL; l++) {
                    __m512i av = _mm512_set1_epi32(ld32(ap + n * AB + 32 * l + 4 * p));
                    for (int r = 0; r < R; r++) {
                        __m512i *d = l ? &dlo[r][n] : &dot[r][n];
                        *d = _mm512_dpbusd_epi32(*d, v[r], av);
                    }
                }
            }
        }
    }
}

// R consecutive row tiles starting at rt, N tokens starting at token t of the call; PL int8
// activation planes (1 = int8, 2 = int16 split).
INLINE TARGET void mk(const lh_mm_args *A, int32_t rt, int32_t t, const int R, const int N,
                      const int BITS, const int MODE, const int PL) {
    const lh_packed *w = A->w;
    const lh_qact *a = A->a;
    const int32_t nb = w->nblocks;
    const int QB = BITS == 4 ? 256 : 512;
    const int SB = MODE == LH_SCALES_F32 ? 128 : MODE == LH_SCALES_F16 ? 64 : 32;
    const int AB = 32 * PL; // activation bytes per token and block
    const size_t qstride = (size_t)nb * QB, sstride = (size_t)nb * SB; // between row tiles
    const uint8_t *wq = w->qdata + (size_t)rt * qstride;
    const uint8_t *ws = w->sdata + (size_t)rt * sstride;
    const size_t astride = (size_t)a->tokens * AB, dstride = (size_t)a->tokens * 2;
    const int8_t *ap = a->q + (size_t)(A->t0 + t) * AB;
    const float *dp = a->ds + (size_t)(A->t0 + t) * 2;

    // Fixed-size arrays (not VLAs) so that, with R and N constant after inlining, they live in
    // registers.
    __m512 acc[4][8];
    for (int r = 0; r < R; r++)
        for (int n = 0; n < N; n++) acc[r][n] = _mm512_setzero_ps();

    for (int32_t b = 0; b < nb; b++) {
        __m512i dot[4][8], dlo[4][8];
        for (int r = 0; r < R; r++)
            for (int n = 0; n < N; n++) dot[r][n] = dlo[r][n] = _mm512_setzero_si512();
        dots(dot, dlo, wq, qstride, ap, AB, R, N, BITS, PL);
        if (PL == 2) {
            // 254 * high + low is the int16-split dot product; it fits in int32 since
            // |dot| <= 32 * 255 * 127. vpmulld and vpaddd run beside the vpdpbusd pipes.
            const __m512i k254 = _mm512_set1_epi32(LH_ACT_SPLIT_SCALE);
            for (int r = 0; r < R; r++)
                for (int n = 0; n < N; n++)
                    dot[r][n] = _mm512_add_epi32(_mm512_mullo_epi32(dot[r][n], k254), dlo[r][n]);
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

// Instantiations: k<planes>_<bits>_<mode>_<R>_<N>.
#define DEF(P, B, M, R, N)                                                                    \
    static TARGET void k##P##_##B##_##M##_##R##_##N(const lh_mm_args *A, int32_t rt,          \
                                                    int32_t t) {                              \
        mk(A, rt, t, R, N, B, M, P);                                                          \
    }
#define DEF2N(P, B, M, R) DEF(P, B, M, R, 1) DEF(P, B, M, R, 2)
#define DEF8N(P, B, M, R) DEF2N(P, B, M, R) DEF(P, B, M, R, 3) DEF(P, B, M, R, 4) \
    DEF(P, B, M, R, 5) DEF(P, B, M, R, 6) DEF(P, B, M, R, 7) DEF(P, B, M, R, 8)
#define DEFALL(P, B, M) DEF8N(P, B, M, 1) DEF2N(P, B, M, 2) DEF2N(P, B, M, 4)
#define DEFFMT(P) DEFALL(P, 4, 0) DEFALL(P, 4, 1) DEFALL(P, 4, 2) \
    DEFALL(P, 8, 0) DEFALL(P, 8, 1) DEFALL(P, 8, 2)
DEFFMT(1) DEFFMT(2)

#define ROW8(P, B, M, R) {k##P##_##B##_##M##_##R##_1, k##P##_##B##_##M##_##R##_2, \
    k##P##_##B##_##M##_##R##_3, k##P##_##B##_##M##_##R##_4, k##P##_##B##_##M##_##R##_5, \
    k##P##_##B##_##M##_##R##_6, k##P##_##B##_##M##_##R##_7, k##P##_##B##_##M##_##R##_8}
#define ROW2(P, B, M, R) {k##P##_##B##_##M##_##R##_1, k##P##_##B##_##M##_##R##_2}
#define FMT8(P, R) ROW8(P, 4, 0, R), ROW8(P, 4, 1, R), ROW8(P, 4, 2, R), \
    ROW8(P, 8, 0, R), ROW8(P, 8, 1, R), ROW8(P, 8, 2, R)
#define FMT2(P, R) ROW2(P, 4, 0, R), ROW2(P, 4, 1, R), ROW2(P, 4, 2, R), \
    ROW2(P, 8, 0, R), ROW2(P, 8, 1, R), ROW2(P, 8, 2, R)
// Indexed by (planes - 1) * 6 + (bits == 8) * 3 + scale_mode, then N - 1.
static const tile_fn R1[12][8] = {FMT8(1, 1), FMT8(2, 1)};
static const tile_fn R2[12][2] = {FMT2(1, 2), FMT2(2, 2)};
static const tile_fn R4[12][2] = {FMT2(1, 4), FMT2(2, 4)};

// Blocking, chosen by measurement on Zen 4 (N = 6..12 token tiles perform within noise of each
// other for int8; the int16 split, with twice the dot chains, is ~5% faster with 6 than 8, and
// 2 row tiles x 4 tokens or chunks of 32..256 tokens were no better): up to SMALL_TOKENS tokens
// (decode), 4 row tiles x all tokens per call so that four independent weight streams and dot
// chains are in flight; otherwise 1 row tile x NTILE tokens, tokens in chunks of TCHUNK so a
// chunk's activations stay in L2 while the weight tile stays in L1.
enum { SMALL_TOKENS = 2, NTILE = 8, NTILE_SPLIT = 6, TCHUNK = 64 };

TARGET void lh_mm_avx512(const lh_mm_args *A, int32_t rt0, int32_t rt1) {
    const int f = (A->a->planes - 1) * 6 + (A->w->bits == 8) * 3 + A->w->scale_mode;
    const int32_t T = A->tokens;
    if (T <= SMALL_TOKENS) {
        int32_t rt = rt0;
        for (; rt + 4 <= rt1; rt += 4) R4[f][T - 1](A, rt, 0);
        for (; rt + 2 <= rt1; rt += 2) R2[f][T - 1](A, rt, 0);
        for (; rt < rt1; rt++) R1[f][T - 1](A, rt, 0);
        return;
    }
    const int NT = A->a->planes == 2 ? NTILE_SPLIT : NTILE, TC = TCHUNK;
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
    const __m512 k254f = _mm512_set1_ps((float)LH_ACT_SPLIT_SCALE);
    const __m512i k254 = _mm512_set1_epi32(LH_ACT_SPLIT_SCALE);
    const int split = a->planes == 2;
    for (int32_t t = t0; t < t1; t++) {
        for (int32_t b = 0; b < a->nblocks; b++) {
            const float *xb = x + t * ldx + 32 * b;
            __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
            __m512 ax = _mm512_max_ps(_mm512_andnot_ps(signmask, x0), _mm512_andnot_ps(signmask, x1));
            float amax = _mm512_reduce_max_ps(ax);
            float da = amax / 127.0f;
            float id = amax > 0 ? 127.0f / amax : 0.0f;
            __m512 vid = _mm512_set1_ps(id);
            __m512 v0 = _mm512_mul_ps(x0, vid), v1 = _mm512_mul_ps(x1, vid);
            __m512i q0 = _mm512_cvtps_epi32(v0), q1 = _mm512_cvtps_epi32(v1);
            q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
            q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
            size_t i = (size_t)b * a->tokens + t;
            int8_t *q = a->q + 32 * a->planes * i;
            _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(q1));
            __m512i sum = _mm512_add_epi32(q0, q1);
            float s = da;
            if (split) {
                __m512i l0 = _mm512_cvtps_epi32(
                    _mm512_mul_ps(_mm512_sub_ps(v0, _mm512_cvtepi32_ps(q0)), k254f));
                __m512i l1 = _mm512_cvtps_epi32(
                    _mm512_mul_ps(_mm512_sub_ps(v1, _mm512_cvtepi32_ps(q1)), k254f));
                l0 = _mm512_max_epi32(_mm512_min_epi32(l0, lim), nlim);
                l1 = _mm512_max_epi32(_mm512_min_epi32(l1, lim), nlim);
                _mm_storeu_si128((__m128i *)(q + 32), _mm512_cvtepi32_epi8(l0));
                _mm_storeu_si128((__m128i *)(q + 48), _mm512_cvtepi32_epi8(l1));
                sum = _mm512_add_epi32(_mm512_mullo_epi32(sum, k254), _mm512_add_epi32(l0, l1));
                s = da / (float)LH_ACT_SPLIT_SCALE;
            }
            a->ds[2 * i] = s;
            a->ds[2 * i + 1] = s * (float)_mm512_reduce_add_epi32(sum);
        }
    }
}

#endif
