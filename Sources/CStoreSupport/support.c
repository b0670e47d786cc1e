// CRC-32C and float32 <-> f16 / q8 conversion for the KV store (see cstoresupport.h).
//
// Each routine has a portable scalar version and SIMD versions compiled with per-function target
// attributes; the best one the CPU supports is chosen on first use. The scalar and SIMD versions give
// bit-identical results (same rounding: nearest even), which the tests check.
#include "cstoresupport.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CS_X86 1
#define CS_SSE42 __attribute__((target("sse4.2")))
#define CS_F16C __attribute__((target("avx2,f16c")))
#define CS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#endif

// ---------------------------------------------------------------------------------------------
// CPU features

static _Atomic int detected = -1;
static _Atomic int forced_scalar = 0;

static int detect(void) {
    int level = 0;
#ifdef CS_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2")) level = 1;
    if (level == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) level = 2;
#endif
    return level;
}

static inline int simd_level(void) {
    if (atomic_load_explicit(&forced_scalar, memory_order_relaxed)) return 0;
    int d = atomic_load_explicit(&detected, memory_order_relaxed);
    if (d < 0) {
        d = detect();
        atomic_store_explicit(&detected, d, memory_order_relaxed);
    }
    return d;
}

int cs_simd_level(void) { return simd_level(); }
void cs_force_scalar(int on) { atomic_store(&forced_scalar, on ? 1 : 0); }

// ---------------------------------------------------------------------------------------------
// CRC-32C

static uint32_t crc_table[256];
static _Atomic int crc_table_ready = 0;

static void crc_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        crc_table[i] = c;
    }
    atomic_store_explicit(&crc_table_ready, 1, memory_order_release);
}

static uint32_t crc_scalar(uint32_t c, const uint8_t *p, size_t n) {
    // Filling the table twice from two threads writes the same values; harmless.
    if (!atomic_load_explicit(&crc_table_ready, memory_order_acquire)) crc_init_table();
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c;
}

#ifdef CS_X86
CS_SSE42 static uint32_t crc_sse42(uint32_t c, const uint8_t *p, size_t n) {
    // One stream, 8 bytes per instruction (3-cycle latency): several GB/s, far more than the store
    // needs, without the shift tables that interleaved streams would require.
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c64;
    while (n > 0) {
        c32 = _mm_crc32_u8(c32, *p++);
        n--;
    }
    return c32;
}
#endif

uint32_t cs_crc32c(uint32_t crc, const void *data, size_t n) {
    uint32_t c = ~crc;
#ifdef CS_X86
    if (simd_level() >= 1) return ~crc_sse42(c, (const uint8_t *)data, n);
#endif
    return ~crc_scalar(c, (const uint8_t *)data, n);
}

// ---------------------------------------------------------------------------------------------
// float16

static inline uint16_t half_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN stays NaN
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7bffu);  // >= 65520 (incl. inf): saturate to 65504
    if (ax < 0x38800000u) {
        // Below the smallest normal half (2^-14): a subnormal, i.e. round(|f| * 2^24) units of 2^-24.
        // The scaling is exact; lrintf rounds to nearest even like the hardware. 1024 encodes 2^-14.
        float af;
        memcpy(&af, &ax, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(af * 16777216.0f));
    }
    uint32_t r = ax - 0x38000000u;             // rebias the exponent from 127 to 15
    r += 0x0fffu + ((r >> 13) & 1u);           // round to nearest even on the 13 dropped bits
    return (uint16_t)(sign | (r >> 13));
}

static inline float float_from_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t bits;
    if (e == 0) {
        float f = (float)m * 5.9604644775390625e-8f;  // subnormal: m * 2^-24
        return sign ? -f : f;
    }
    if (e == 31) bits = sign | 0x7f800000u | (m << 13);
    else bits = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#ifdef CS_X86
CS_AVX512 static void f32_to_f16_avx512(uint16_t *dst, const float *src, size_t n) {
    // min(C, x) returns x when x is NaN (minps returns its second operand on NaN), so NaN survives.
    const __m512 hi = _mm512_set1_ps(65504.0f), lo = _mm512_set1_ps(-65504.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(src + i);
        x = _mm512_max_ps(lo, _mm512_min_ps(hi, x));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, src + i);
        x = _mm512_max_ps(lo, _mm512_min_ps(hi, x));
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

CS_AVX512 static void f16_to_f32_avx512(float *dst, const uint16_t *src, size_t n) {
    // Each step loads 16 halves before storing 16 floats: in-place safe (see the header).
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m256i h = _mm256_maskz_loadu_epi16(m, src + i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(h));
    }
}

CS_F16C static void f32_to_f16_f16c(uint16_t *dst, const float *src, size_t n) {
    const __m256 hi = _mm256_set1_ps(65504.0f), lo = _mm256_set1_ps(-65504.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(src + i);
        x = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) dst[i] = half_from_float(src[i]);
}

CS_F16C static void f16_to_f32_f16c(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = float_from_half(src[i]);
}
#endif

void cs_f32_to_f16(uint16_t *dst, const float *src, size_t n) {
#ifdef CS_X86
    int l = simd_level();
    if (l == 2) { f32_to_f16_avx512(dst, src, n); return; }
    if (l == 1) { f32_to_f16_f16c(dst, src, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = half_from_float(src[i]);
}

void cs_f16_to_f32(float *dst, const uint16_t *src, size_t n) {
#ifdef CS_X86
    int l = simd_level();
    if (l == 2) { f16_to_f32_avx512(dst, src, n); return; }
    if (l == 1) { f16_to_f32_f16c(dst, src, n); return; }
#endif
    // Element by element, each read before its write: in-place safe.
    for (size_t i = 0; i < n; i++) {
        uint16_t h = src[i];
        dst[i] = float_from_half(h);
    }
}

// ---------------------------------------------------------------------------------------------
// KIVI page codec (see cstoresupport.h for the layout and the error bound)

// Products and sums stay separate operations in both paths (no FMA): bit-identical decodes.
#pragma STDC FP_CONTRACT OFF

uint16_t cs_half(float x) { return half_from_float(x); }
float cs_float(uint16_t h) { return float_from_half(h); }

static inline int32_t key_groups_per_channel(int32_t w) {
    int32_t tiles = w / 16;
    return (tiles + CS_KIVI_KEY_TILES - 1) / CS_KIVI_KEY_TILES;
}

static inline size_t kivi_param_pairs(int32_t G, int32_t w, int32_t D) {
    return (size_t)G * key_groups_per_channel(w) * D + (size_t)G * w;
}

size_t cs_kivi_param_bytes(int32_t G, int32_t w, int32_t D) { return 4 * kivi_param_pairs(G, w, D); }

size_t cs_kivi_bytes(int32_t bits, int32_t G, int32_t w, int32_t D) {
    size_t n = 2 * (size_t)G * w * D;
    return cs_kivi_param_bytes(G, w, D) + (bits == 4 ? (n + 1) / 2 : n);
}

// The largest half <= x, and the smallest half whose float is >= x (x finite, |x| < 65504).
static uint16_t half_down(float x) {
    uint16_t h = half_from_float(x);
    if (float_from_half(h) > x) h = (h & 0x8000u) ? (uint16_t)(h + 1) : (h == 0 ? 0x8001u : (uint16_t)(h - 1));
    return h;
}

static uint16_t half_up_positive(float x) {
    uint16_t h = half_from_float(x);
    while (float_from_half(h) < x && h < 0x7bffu) h++;
    return h;
}

static inline float finite_or_zero(float x) { return isfinite(x) ? x : 0.0f; }

// Parameters of one group of `k` values read with stride `stride`: min rounded down, scale rounded up
// (to halves) so that min + levels * scale covers the group's maximum. Values beyond the half range
// are clamped to it (KV values of real models are far smaller).
static void group_params(const float *x, int32_t k, int32_t stride, int32_t levels, uint16_t *pmin, uint16_t *pscale) {
    float lo = INFINITY, hi = -INFINITY;
    for (int32_t j = 0; j < k; j++) {
        float v = finite_or_zero(x[(size_t)j * stride]);
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    lo = fmaxf(fminf(lo, 65504.0f), -65504.0f);
    hi = fmaxf(fminf(hi, 65504.0f), -65504.0f);
    uint16_t m = half_down(lo);
    float mf = float_from_half(m);
    float range = hi - mf;
    uint16_t s = range > 0 ? half_up_positive(range / (float)levels) : 0;
    // The product below is what the decoder computes; nudge the scale up until it reaches `hi`.
    while (s < 0x7bffu && mf + (float)levels * float_from_half(s) < hi) s++;
    *pmin = m;
    *pscale = s;
}

static inline uint32_t quantize(float x, float mn, float inv, int32_t levels) {
    float q = rintf((finite_or_zero(x) - mn) * inv);
    if (!(q >= 0)) q = 0;  // also NaN
    if (q > (float)levels) q = (float)levels;
    return (uint32_t)q;
}

static inline void put_code(uint8_t *quants, int32_t bits, size_t i, uint32_t code) {
    if (bits == 8) quants[i] = (uint8_t)code;
    else if (i & 1) quants[i >> 1] = (uint8_t)((quants[i >> 1] & 0x0fu) | (code << 4));
    else quants[i >> 1] = (uint8_t)((quants[i >> 1] & 0xf0u) | code);
}

static inline uint32_t get_code(const uint8_t *quants, int32_t bits, size_t i) {
    if (bits == 8) return quants[i];
    return (quants[i >> 1] >> ((i & 1) * 4)) & 0x0fu;
}

// The inverse step used to quantize: codes are round((x - min) / scale), computed as a product.
static inline float inverse(float scale) { return scale > 0 ? 1.0f / scale : 0.0f; }

void cs_kivi_encode(uint8_t *dst, const float *src, int32_t bits, int32_t G, int32_t w, int32_t D) {
    const int32_t levels = (1 << bits) - 1, tiles = w / 16, kg = key_groups_per_channel(w);
    const size_t headFloats = (size_t)w * D;
    uint16_t *params = (uint16_t *)dst;  // dst is 2-byte aligned: the page buffers are
    uint8_t *quants = dst + cs_kivi_param_bytes(G, w, D);
    memset(quants, 0, cs_kivi_bytes(bits, G, w, D) - cs_kivi_param_bytes(G, w, D));
    size_t p = 0;
    // Keys: per channel d of head g over the tiles t0..<t1 of one group.
    for (int32_t g = 0; g < G; g++) {
        const float *K = src + g * headFloats;
        for (int32_t gi = 0; gi < kg; gi++) {
            int32_t t0 = gi * CS_KIVI_KEY_TILES, t1 = t0 + CS_KIVI_KEY_TILES < tiles ? t0 + CS_KIVI_KEY_TILES : tiles;
            for (int32_t d = 0; d < D; d++, p++) {
                float lo = INFINITY, hi = -INFINITY;
                for (int32_t t = t0; t < t1; t++) {
                    const float *x = K + (size_t)t * 16 * D + (size_t)d * 16;
                    for (int32_t j = 0; j < 16; j++) {
                        float v = finite_or_zero(x[j]);
                        lo = fminf(lo, v);
                        hi = fmaxf(hi, v);
                    }
                }
                float pair[2] = {lo, hi};
                group_params(pair, 2, 1, levels, &params[2 * p], &params[2 * p + 1]);
                float mn = float_from_half(params[2 * p]), inv = inverse(float_from_half(params[2 * p + 1]));
                for (int32_t t = t0; t < t1; t++) {
                    size_t base = g * headFloats + (size_t)t * 16 * D + (size_t)d * 16;
                    for (int32_t j = 0; j < 16; j++) put_code(quants, bits, base + j, quantize(src[base + j], mn, inv, levels));
                }
            }
        }
    }
    // Values: per token of each head.
    for (int32_t g = 0; g < G; g++) {
        for (int32_t t = 0; t < w; t++, p++) {
            size_t base = ((size_t)G + g) * headFloats + (size_t)t * D;
            group_params(src + base, D, 1, levels, &params[2 * p], &params[2 * p + 1]);
            float mn = float_from_half(params[2 * p]), inv = inverse(float_from_half(params[2 * p + 1]));
            for (int32_t d = 0; d < D; d++) put_code(quants, bits, base + d, quantize(src[base + d], mn, inv, levels));
        }
    }
}

void cs_kivi_decode_ref(float *dst, const uint8_t *src, uint16_t *params, int32_t bits, int32_t G, int32_t w, int32_t D) {
    const int32_t tiles = w / 16, kg = key_groups_per_channel(w);
    const size_t headFloats = (size_t)w * D;
    memcpy(params, src, cs_kivi_param_bytes(G, w, D));
    const uint8_t *quants = src + cs_kivi_param_bytes(G, w, D);
    // In float-page order, each code read before its float is written (in-place safety, header).
    for (int32_t g = 0; g < G; g++) {
        for (int32_t t = 0; t < tiles; t++) {
            const uint16_t *pk = params + 2 * ((size_t)(g * kg + t / CS_KIVI_KEY_TILES) * D);
            for (int32_t d = 0; d < D; d++) {
                float mn = float_from_half(pk[2 * d]), sc = float_from_half(pk[2 * d + 1]);
                size_t base = g * headFloats + (size_t)t * 16 * D + (size_t)d * 16;
                for (int32_t j = 0; j < 16; j++) dst[base + j] = mn + (float)get_code(quants, bits, base + j) * sc;
            }
        }
    }
    const uint16_t *pv = params + 2 * (size_t)G * kg * D;
    for (int32_t g = 0; g < G; g++) {
        for (int32_t t = 0; t < w; t++) {
            float mn = float_from_half(pv[2 * ((size_t)g * w + t)]), sc = float_from_half(pv[2 * ((size_t)g * w + t) + 1]);
            size_t base = ((size_t)G + g) * headFloats + (size_t)t * D;
            for (int32_t d = 0; d < D; d++) dst[base + d] = mn + (float)get_code(quants, bits, base + d) * sc;
        }
    }
}

#ifdef CS_X86
// 16 codes starting at element i (i a multiple of 16) as floats.
CS_AVX512 static inline __m512 codes16(const uint8_t *quants, int32_t bits, size_t i) {
    if (bits == 8) return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(quants + i))));
    // 8 bytes hold 16 nibbles: element 2k in the low nibble of byte k, 2k+1 in the high one.
    __m128i b = _mm_loadl_epi64((const __m128i *)(quants + i / 2));
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    __m128i inter = _mm_unpacklo_epi8(lo, hi);  // lo0 hi0 lo1 hi1 ... = elements 0..15 in order
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(inter));
}

// Same order of reads and writes as the reference (16 codes loaded before their 16 floats are
// stored): in-place safe. The same float operations (code * scale, then + min; no FMA), so the
// results are bit-identical.
CS_AVX512 static void kivi_decode_avx512(float *dst, const uint8_t *src, uint16_t *params, int32_t bits, int32_t G, int32_t w, int32_t D) {
    const int32_t tiles = w / 16, kg = key_groups_per_channel(w);
    const size_t headFloats = (size_t)w * D;
    memcpy(params, src, cs_kivi_param_bytes(G, w, D));
    const uint8_t *quants = src + cs_kivi_param_bytes(G, w, D);
    for (int32_t g = 0; g < G; g++) {
        for (int32_t t = 0; t < tiles; t++) {
            const uint16_t *pk = params + 2 * ((size_t)(g * kg + t / CS_KIVI_KEY_TILES) * D);
            for (int32_t d = 0; d < D; d++) {
                size_t base = g * headFloats + (size_t)t * 16 * D + (size_t)d * 16;
                __m512 c = codes16(quants, bits, base);
                __m512 v = _mm512_add_ps(_mm512_mul_ps(c, _mm512_set1_ps(float_from_half(pk[2 * d + 1]))),
                                         _mm512_set1_ps(float_from_half(pk[2 * d])));
                _mm512_storeu_ps(dst + base, v);
            }
        }
    }
    const uint16_t *pv = params + 2 * (size_t)G * kg * D;
    for (int32_t g = 0; g < G; g++) {
        for (int32_t t = 0; t < w; t++) {
            const __m512 mn = _mm512_set1_ps(float_from_half(pv[2 * ((size_t)g * w + t)]));
            const __m512 sc = _mm512_set1_ps(float_from_half(pv[2 * ((size_t)g * w + t) + 1]));
            size_t base = ((size_t)G + g) * headFloats + (size_t)t * D;
            int32_t d = 0;
            for (; d + 16 <= D && (base + d) % 16 == 0; d += 16)
                _mm512_storeu_ps(dst + base + d, _mm512_add_ps(_mm512_mul_ps(codes16(quants, bits, base + d), sc), mn));
            for (; d < D; d++) dst[base + d] = float_from_half(pv[2 * ((size_t)g * w + t)]) +
                                              (float)get_code(quants, bits, base + d) * float_from_half(pv[2 * ((size_t)g * w + t) + 1]);
        }
    }
}
#endif

void cs_kivi_decode(float *dst, const uint8_t *src, uint16_t *params, int32_t bits, int32_t G, int32_t w, int32_t D) {
#ifdef CS_X86
    if (simd_level() == 2) {
        kivi_decode_avx512(dst, src, params, bits, G, w, D);
        return;
    }
#endif
    cs_kivi_decode_ref(dst, src, params, bits, G, w, D);
}
