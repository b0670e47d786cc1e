// CStoreSupport: the few hot loops of the KV store that want SIMD: CRC-32C, float32 <-> float16, and
// the KIVI-style q8/q4 page codec (keys per channel, values per token; arXiv 2402.02750).
// SSE4.2 / F16C / AVX-512 paths are chosen at run time from the CPU features, with portable scalar
// fallbacks.
#ifndef CSTORESUPPORT_H
#define CSTORESUPPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `n` bytes, continuing from `crc`
/// (pass 0 to start). Standard convention: cs_crc32c(0, "123456789", 9) == 0xE3069283.
uint32_t cs_crc32c(uint32_t crc, const void *data, size_t n);

/// Converts `n` floats to IEEE half precision, rounding to nearest even and saturating finite values
/// beyond +-65504 to +-65504 (NaN stays NaN). `dst` must not overlap `src`.
void cs_f32_to_f16(uint16_t *dst, const float *src, size_t n);

/// Converts `n` halves to floats. In-place safe when the halves sit in the upper half of the float
/// buffer: src == (const uint16_t *)dst + n (the store decodes pages without a scratch buffer).
void cs_f16_to_f32(float *dst, const uint16_t *src, size_t n);

// ---------------------------------------------------------------------------------------------
// KIVI page codec (Liu et al. 2024, "KIVI: a tuning-free asymmetric 2bit quantization for KV cache",
// arXiv 2402.02750, section 3): asymmetric (min + scale) quantization to `bits` = 8 or 4 bits, keys
// grouped per channel (their outliers live in fixed channels), values per token.
//
// The float page it encodes is one chunk of `w` tokens (w a multiple of 16) for `G` KV heads of
// dimension `D` (ChunkArchive.swift):
//     keys   [G][w/16][D][16]   (16-key tiles: a channel's 16 tokens are contiguous)
//     values [G][w][D]
// Groups: a key group is one channel over CS_KIVI_KEY_TILES tiles (64 tokens; the last group of a
// chunk may hold fewer tiles), a value group is one token's D values of one head.
// Encoded page: a parameter plane, then a quant plane:
//     params  u16 pairs {min, scale} (IEEE half): key groups [G][ceil(tiles/4)][D], then value
//             groups [G][w]
//     quants  one code per float in the float page's order; q8: a byte each; q4: two per byte,
//             element 2i in the low nibble of byte i, 2i+1 in the high one
// Decoded value = min + code * scale (float arithmetic). The encoder rounds min down and scale up to
// halves before it quantizes against them, so every value of a group lies in
// [min, min + (2^bits - 1) * scale] and its error is at most scale / 2 (plus float rounding).
#define CS_KIVI_KEY_TILES 4

/// Bytes of the parameter plane of a page.
size_t cs_kivi_param_bytes(int32_t G, int32_t w, int32_t D);
/// Bytes of an encoded page (params + quants).
size_t cs_kivi_bytes(int32_t bits, int32_t G, int32_t w, int32_t D);

/// Encodes a float page (layout above). Non-finite inputs are treated as 0. `dst` must not overlap
/// `src`. Plain scalar code: the reference.
void cs_kivi_encode(uint8_t *dst, const float *src, int32_t bits, int32_t G, int32_t w, int32_t D);

/// Decodes an encoded page into floats. `params` receives a copy of the parameter plane first
/// (cs_kivi_param_bytes bytes, 2-byte aligned, not overlapping `dst`), which makes the decode in-place
/// safe when the encoded bytes end where the float buffer ends:
/// src == (const uint8_t *)dst + 4 * n - cs_kivi_bytes(...), n = 2 * G * w * D (the quant plane then
/// lies at or past the floats being written). Uses the SIMD path when available.
void cs_kivi_decode(float *dst, const uint8_t *src, uint16_t *params, int32_t bits, int32_t G, int32_t w, int32_t D);
/// The plain scalar decode, same contract: the reference the SIMD path is tested against.
void cs_kivi_decode_ref(float *dst, const uint8_t *src, uint16_t *params, int32_t bits, int32_t G, int32_t w, int32_t D);

/// IEEE half <-> float for one value (round to nearest even), for tests and reports.
uint16_t cs_half(float x);
float cs_float(uint16_t h);

/// 0 = portable scalar code, 1 = SSE4.2/F16C, 2 = AVX-512 (for reports and tests).
int cs_simd_level(void);
/// Forces the scalar code (1) or the best available (0); for tests that compare the two paths.
void cs_force_scalar(int on);

#ifdef __cplusplus
}
#endif
#endif
