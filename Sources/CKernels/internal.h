// Internal declarations shared by the CKernels translation units (not part of the public API).
#ifndef LONGHEADS_CKERNELS_INTERNAL_H
#define LONGHEADS_CKERNELS_INTERNAL_H

#include "ckernels.h"

#include <stdbool.h>

#define LH_TILE_ROWS 16
#define LH_BLOCK 32

#if defined(__x86_64__) || defined(__i386__)
#define LH_X86 1
#else
#define LH_X86 0
#endif

/// Arguments of one matmul, shared by every task of a dispatch.
typedef struct {
    const lh_packed *w;
    const lh_qact *a;
    int32_t t0, tokens;
    float *out;
    int64_t ldo;
} lh_mm_args;

/// Computes row tiles [rt0, rt1) for all tokens of `args`.
typedef void (*lh_mm_kernel)(const lh_mm_args *args, int32_t rt0, int32_t rt1);
/// Quantizes tokens [t0, t1) of x into a (a->tokens already set).
typedef void (*lh_quant_kernel)(lh_qact *a, const float *x, int64_t ldx, int32_t t0, int32_t t1);

void lh_mm_scalar(const lh_mm_args *args, int32_t rt0, int32_t rt1);
void lh_quant_scalar(lh_qact *a, const float *x, int64_t ldx, int32_t t0, int32_t t1);
#if LH_X86
void lh_mm_avx2(const lh_mm_args *args, int32_t rt0, int32_t rt1);
void lh_quant_avx2(lh_qact *a, const float *x, int64_t ldx, int32_t t0, int32_t t1);
void lh_mm_avx512(const lh_mm_args *args, int32_t rt0, int32_t rt1);
void lh_quant_avx512(lh_qact *a, const float *x, int64_t ldx, int32_t t0, int32_t t1);
#endif

/// Round to nearest, ties to even (as nearbyintf in the default rounding mode and the SIMD
/// float->int conversions), without libm: adding and removing 2^23 leaves no fraction bits.
static inline float lh_round_even(float v) {
    if (!(v < 0x1p23f && v > -0x1p23f)) return v; // already integral (or NaN)
    return v >= 0 ? (v + 0x1p23f) - 0x1p23f : -((-v + 0x1p23f) - 0x1p23f);
}

static inline float lh_absf(float v) { return v < 0 ? -v : v; }
static inline bool lh_isfinite(float v) { return v - v == 0; } // inf - inf and NaN give NaN

/// Byte offsets inside one tile: quants first, then d[16] and m[16] as float.
static inline int32_t lh_tile_quant_bytes(int32_t bits) { return bits == 4 ? 256 : 512; }

#endif
