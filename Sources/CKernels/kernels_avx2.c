// AVX2 path for CPUs without AVX-512: a ymm covers half of a 16-row tile (8 rows x 4 k).
// vpmaddubsw (u8 x s8 -> saturating s16 pairs) + vpmaddwd reduce to int32. 4-bit weights
// (u <= 15) can sum eight vpmaddubsw results in int16 without overflow (8 * 2 * 15 * 127 <
// 32767); 8-bit weights are made signed (u - 128) and use the abs/sign trick so a pair stays
// below 2 * 128 * 127, with the 128 * sum(q) offset folded into the min term. Both planes of
// int16-split activations are in [-127, 127] too, so each goes through the same code and the
// two int32 dots are combined as 254 * high + low.
#include "internal.h"

#if LH_X86
#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

INLINE int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// int32 dot products of 8 rows (the half-tile at wp) with one int8 activation plane of N tokens
// (plane bytes at ap + n * AB) over one block of 32.
INLINE TARGET void dots(__m256i dot[4], const uint8_t *wp, const int8_t *ap, const int AB,
                        const int N, const int BITS) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i x80 = _mm256_set1_epi8((char)0x80);
    const __m256i ones = _mm256_set1_epi16(1);
    if (BITS == 4) {
        __m256i s16[4];
        for (int n = 0; n < N; n++) s16[n] = _mm256_setzero_si256();
        for (int p = 0; p < 4; p++) {
            __m256i v = _mm256_load_si256((const __m256i *)(wp + 64 * p));
            __m256i lo = _mm256_and_si256(v, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            for (int n = 0; n < N; n++) {
                __m256i al = _mm256_set1_epi32(ld32(ap + n * AB + 4 * p));
                __m256i ah = _mm256_set1_epi32(ld32(ap + n * AB + 16 + 4 * p));
                s16[n] = _mm256_add_epi16(s16[n], _mm256_maddubs_epi16(lo, al));
                s16[n] = _mm256_add_epi16(s16[n], _mm256_maddubs_epi16(hi, ah));
            }
        }
        for (int n = 0; n < N; n++) dot[n] = _mm256_madd_epi16(s16[n], ones);
    } else {
        for (int n = 0; n < N; n++) dot[n] = _mm256_setzero_si256();
        for (int p = 0; p < 8; p++) {
            __m256i v = _mm256_load_si256((const __m256i *)(wp + 64 * p));
            __m256i s = _mm256_xor_si256(v, x80); // u - 128 as int8
            __m256i as = _mm256_sign_epi8(s, s);  // |u - 128| (128 stays 0x80 = 128 unsigned)
            for (int n = 0; n < N; n++) {
                __m256i av = _mm256_set1_epi32(ld32(ap + n * AB + 4 * p));
                __m256i prod = _mm256_maddubs_epi16(as, _mm256_sign_epi8(av, s));
                dot[n] = _mm256_add_epi32(dot[n], _mm256_madd_epi16(prod, ones));
            }
        }
    }
}

// Half h (rows 8h..8h+7) of row tile rt, N tokens starting at t, PL activation planes.
INLINE TARGET void mk(const lh_mm_args *A, int32_t rt, int h, int32_t t, const int N,
                      const int BITS, const int MODE, const int PL) {
    const lh_packed *w = A->w;
    const lh_qact *a = A->a;
    const int32_t nb = w->nblocks;
    const int QB = BITS == 4 ? 256 : 512;
    const int SB = MODE == LH_SCALES_F32 ? 128 : MODE == LH_SCALES_F16 ? 64 : 32;
    const int AB = 32 * PL;
    const uint8_t *wp = w->qdata + (size_t)rt * nb * QB + 32 * h;
    const uint8_t *ws = w->sdata + (size_t)rt * nb * SB;
    const size_t astride = (size_t)a->tokens * AB, dstride = (size_t)a->tokens * 2;
    const int8_t *ap = a->q + (size_t)(A->t0 + t) * AB;
    const float *dp = a->ds + (size_t)(A->t0 + t) * 2;

    __m256 acc[4]; // fixed size (not a VLA) so it stays in registers
    for (int n = 0; n < N; n++) acc[n] = _mm256_setzero_ps();
    for (int32_t b = 0; b < nb; b++) {
        __m256i dot[4];
        dots(dot, wp, ap, AB, N, BITS);
        if (PL == 2) {
            // High plane times 254 plus the low plane (fits int32: |dot| <= 32 * 255 * 127).
            __m256i lo[4];
            dots(lo, wp, ap + 32, AB, N, BITS);
            const __m256i k254 = _mm256_set1_epi32(LH_ACT_SPLIT_SCALE);
            for (int n = 0; n < N; n++)
                dot[n] = _mm256_add_epi32(_mm256_mullo_epi32(dot[n], k254), lo[n]);
        }
        __m256 dw, mw;
        if (MODE == LH_SCALES_F32) {
            dw = _mm256_load_ps((const float *)ws + 8 * h);
            mw = _mm256_load_ps((const float *)ws + 16 + 8 * h);
        } else {
            dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)((const uint16_t *)ws + 8 * h)));
            if (MODE == LH_SCALES_F16)
                mw = _mm256_cvtph_ps(
                    _mm_load_si128((const __m128i *)((const uint16_t *)ws + 16 + 8 * h)));
            else
                mw = _mm256_mul_ps(dw, _mm256_set1_ps(-(float)(1 << (BITS - 1))));
        }
        if (BITS == 8) mw = _mm256_fmadd_ps(dw, _mm256_set1_ps(128.0f), mw);
        for (int n = 0; n < N; n++) {
            __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(dp[2 * n]));
            acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[n]), scale, acc[n]);
            acc[n] = _mm256_fmadd_ps(mw, _mm256_set1_ps(dp[2 * n + 1]), acc[n]);
        }
        wp += QB;
        ws += SB;
        ap += astride;
        dp += dstride;
    }
    int32_t row0 = rt * 16 + 8 * h;
    int32_t valid = w->rows - row0;
    for (int n = 0; n < N; n++) {
        float *o = A->out + (int64_t)(t + n) * A->ldo + row0;
        if (valid >= 8) {
            _mm256_storeu_ps(o, acc[n]);
        } else {
            float tmp[8];
            _mm256_storeu_ps(tmp, acc[n]);
            for (int i = 0; i < valid; i++) o[i] = tmp[i];
        }
    }
}

typedef void (*tile_fn)(const lh_mm_args *, int32_t, int, int32_t);
#define DEF(P, B, M, N)                                                                       \
    static TARGET void k##P##_##B##_##M##_##N(const lh_mm_args *A, int32_t rt, int h,         \
                                              int32_t t) {                                    \
        mk(A, rt, h, t, N, B, M, P);                                                          \
    }
#define DEFN(P, B, M) DEF(P, B, M, 1) DEF(P, B, M, 2) DEF(P, B, M, 3) DEF(P, B, M, 4)
#define DEFFMT(P) DEFN(P, 4, 0) DEFN(P, 4, 1) DEFN(P, 4, 2) DEFN(P, 8, 0) DEFN(P, 8, 1) \
    DEFN(P, 8, 2)
DEFFMT(1) DEFFMT(2)
#define ROW(P, B, M) {k##P##_##B##_##M##_1, k##P##_##B##_##M##_2, k##P##_##B##_##M##_3, \
    k##P##_##B##_##M##_4}
#define FMT(P) ROW(P, 4, 0), ROW(P, 4, 1), ROW(P, 4, 2), ROW(P, 8, 0), ROW(P, 8, 1), ROW(P, 8, 2)
// Indexed by (planes - 1) * 6 + (bits == 8) * 3 + scale_mode, then N - 1.
static const tile_fn K[12][4] = {FMT(1), FMT(2)};

TARGET void lh_mm_avx2(const lh_mm_args *A, int32_t rt0, int32_t rt1) {
    const int f = (A->a->planes - 1) * 6 + (A->w->bits == 8) * 3 + A->w->scale_mode;
    for (int32_t rt = rt0; rt < rt1; rt++) {
        for (int h = 0; h < 2; h++) {
            if (A->w->rows <= rt * 16 + 8 * h) break;
            for (int32_t t = 0; t < A->tokens; t += 4) {
                int32_t n = A->tokens - t < 4 ? A->tokens - t : 4;
                K[f][n - 1](A, rt, h, t);
            }
        }
    }
}

// Packs 4 x 8 int32 (each in [-127, 127]) to 32 int8 in order (packs interleave 128-bit lanes:
// fixed with a permute).
INLINE TARGET __m256i pack32(const __m256i q[4]) {
    __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i p = _mm256_packs_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TARGET void lh_quant_avx2(lh_qact *a, const float *x, int64_t ldx, int32_t t0, int32_t t1) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    const __m256 k254f = _mm256_set1_ps((float)LH_ACT_SPLIT_SCALE);
    const __m256i k254 = _mm256_set1_epi32(LH_ACT_SPLIT_SCALE);
    const int split = a->planes == 2;
    for (int32_t t = t0; t < t1; t++) {
        for (int32_t b = 0; b < a->nblocks; b++) {
            const float *xb = x + t * ldx + 32 * b;
            __m256 v[4];
            __m256 ax = _mm256_setzero_ps();
            for (int j = 0; j < 4; j++) {
                v[j] = _mm256_loadu_ps(xb + 8 * j);
                ax = _mm256_max_ps(ax, _mm256_andnot_ps(signmask, v[j]));
            }
            __m128 m = _mm_max_ps(_mm256_castps256_ps128(ax), _mm256_extractf128_ps(ax, 1));
            m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            m = _mm_max_ss(m, _mm_movehdup_ps(m));
            float amax = _mm_cvtss_f32(m);
            float da = amax / 127.0f;
            float id = amax > 0 ? 127.0f / amax : 0.0f;
            __m256 vid = _mm256_set1_ps(id);
            __m256i q[4];
            __m256i sum = _mm256_setzero_si256();
            for (int j = 0; j < 4; j++) {
                v[j] = _mm256_mul_ps(v[j], vid);
                q[j] = _mm256_cvtps_epi32(v[j]);
                q[j] = _mm256_max_epi32(_mm256_min_epi32(q[j], lim), nlim);
                sum = _mm256_add_epi32(sum, q[j]);
            }
            size_t i = (size_t)b * a->tokens + t;
            int8_t *qp = a->q + 32 * a->planes * i;
            _mm256_storeu_si256((__m256i *)qp, pack32(q));
            float s = da;
            if (split) {
                __m256i l[4];
                __m256i lsum = _mm256_setzero_si256();
                for (int j = 0; j < 4; j++) {
                    __m256 r = _mm256_sub_ps(v[j], _mm256_cvtepi32_ps(q[j]));
                    l[j] = _mm256_cvtps_epi32(_mm256_mul_ps(r, k254f));
                    l[j] = _mm256_max_epi32(_mm256_min_epi32(l[j], lim), nlim);
                    lsum = _mm256_add_epi32(lsum, l[j]);
                }
                _mm256_storeu_si256((__m256i *)(qp + 32), pack32(l));
                sum = _mm256_add_epi32(_mm256_mullo_epi32(sum, k254), lsum);
                s = da / (float)LH_ACT_SPLIT_SCALE;
            }
            __m128i hs = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
            hs = _mm_add_epi32(hs, _mm_shuffle_epi32(hs, 0x4e));
            hs = _mm_add_epi32(hs, _mm_shuffle_epi32(hs, 0xb1));
            a->ds[2 * i] = s;
            a->ds[2 * i + 1] = s * (float)_mm_cvtsi128_si32(hs);
        }
    }
}

#endif
