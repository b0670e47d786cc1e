// CStoreSupport: the few hot loops of the KV store that want SIMD: CRC-32C, float32 <-> float16 and
// float32 <-> q8 (8-bit, one float32 scale per block of 32 values). SSE4.2 / F16C / AVX-512 paths are
// chosen at run time from the CPU features, with portable scalar fallbacks.
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

/// Bytes of `n` values in q8: for each block of 32 values (the last may be shorter) a float32 scale
/// followed by the block's int8 values.
size_t cs_q8_bytes(size_t n);

/// Quantizes `n` floats to q8 (layout of cs_q8_bytes): scale = max|x| / 127, q = round(x / scale).
/// Error per value <= scale / 2. `dst` must not overlap `src`.
void cs_f32_to_q8(uint8_t *dst, const float *src, size_t n);

/// Dequantizes q8 back to floats. In-place safe when the q8 bytes end where the float buffer ends:
/// src == (const uint8_t *)dst + 4 * n - cs_q8_bytes(n).
void cs_q8_to_f32(float *dst, const uint8_t *src, size_t n);

/// 0 = portable scalar code, 1 = SSE4.2/F16C, 2 = AVX-512 (for reports and tests).
int cs_simd_level(void);
/// Forces the scalar code (1) or the best available (0); for tests that compare the two paths.
void cs_force_scalar(int on);

#ifdef __cplusplus
}
#endif
#endif
