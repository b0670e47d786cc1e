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
// q8: per block of up to 32 values, { float32 scale; int8 q[count] }

size_t cs_q8_bytes(size_t n) { return n + 4 * ((n + 31) / 32); }

static void q8_block_scalar(uint8_t *dst, const float *x, size_t k) {
    float amax = 0;
    for (size_t j = 0; j < k; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = amax > 0 ? 127.0f / amax : 0.0f;
    memcpy(dst, &d, 4);
    for (size_t j = 0; j < k; j++) {
        long q = lrintf(x[j] * id);
        if (q > 127) q = 127;
        if (q < -128) q = -128;
        dst[4 + j] = (uint8_t)(int8_t)q;
    }
}

static void q8_dequant_block_scalar(float *out, const uint8_t *blk, size_t k) {
    // Copy the block out first: in place, the output overlaps this block's own input.
    uint8_t q[32];
    float d;
    memcpy(&d, blk, 4);
    memcpy(q, blk + 4, k);
    for (size_t j = 0; j < k; j++) out[j] = (float)(int8_t)q[j] * d;
}

#ifdef CS_X86
CS_AVX512 static void f32_to_q8_avx512(uint8_t *dst, const float *src, size_t full) {
    const __m512 signless = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < full; b++) {
        const float *x = src + 32 * b;
        uint8_t *o = dst + 36 * b;
        __m512 a = _mm512_loadu_ps(x), c = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(a, signless), _mm512_and_ps(c, signless)));
        float d = amax / 127.0f;
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        memcpy(o, &d, 4);
        __m512 vid = _mm512_set1_ps(id);
        __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid));  // nearest even, like lrintf
        __m512i qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, vid));
        _mm_storeu_si128((__m128i *)(o + 4), _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(o + 20), _mm512_cvtsepi32_epi8(qc));
    }
}

CS_AVX512 static void q8_to_f32_avx512(float *dst, const uint8_t *src, size_t full) {
    for (size_t b = 0; b < full; b++) {
        const uint8_t *blk = src + 36 * b;
        // Load the whole block before storing its floats: in-place safe.
        float d;
        memcpy(&d, blk, 4);
        __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 4));
        __m512 vd = _mm512_set1_ps(d);
        __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
        _mm512_storeu_ps(dst + 32 * b, _mm512_mul_ps(lo, vd));
        _mm512_storeu_ps(dst + 32 * b + 16, _mm512_mul_ps(hi, vd));
    }
}
#endif

void cs_f32_to_q8(uint8_t *dst, const float *src, size_t n) {
    size_t full = n / 32, tail = n % 32;
    size_t b = 0;
#ifdef CS_X86
    if (simd_level() == 2) {
        f32_to_q8_avx512(dst, src, full);
        b = full;
    }
#endif
    for (; b < full; b++) q8_block_scalar(dst + 36 * b, src + 32 * b, 32);
    if (tail) q8_block_scalar(dst + 36 * full, src + 32 * full, tail);
}

void cs_q8_to_f32(float *dst, const uint8_t *src, size_t n) {
    size_t full = n / 32, tail = n % 32;
    // The short tail block is read first: in place, the last full block's output can reach it.
    uint8_t tailBlock[36];
    if (tail) memcpy(tailBlock, src + 36 * full, 4 + tail);
    size_t b = 0;
#ifdef CS_X86
    if (simd_level() == 2) {
        q8_to_f32_avx512(dst, src, full);
        b = full;
    }
#endif
    for (; b < full; b++) q8_dequant_block_scalar(dst + 32 * b, src + 36 * b, 32);
    if (tail) q8_dequant_block_scalar(dst + 32 * full, tailBlock, tail);
}
