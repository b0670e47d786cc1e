// Plain scalar code: ggml type tables, fp16/bf16 conversion, reference dequantization and
// matmul, weight repacking, and the scalar fallback kernels. Everything here is portable C and
// serves as the ground truth the SIMD paths are tested against.
#include "internal.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Types

int64_t lh_type_block_size(int type) {
    switch (type) {
    case LH_TYPE_F32: case LH_TYPE_F16: case LH_TYPE_BF16: return 1;
    case LH_TYPE_Q4_0: case LH_TYPE_Q4_1: case LH_TYPE_Q5_0: case LH_TYPE_Q5_1:
    case LH_TYPE_Q8_0: return 32;
    case LH_TYPE_Q4_K: case LH_TYPE_Q5_K: case LH_TYPE_Q6_K: return 256;
    default: return 0;
    }
}

int64_t lh_type_block_bytes(int type) {
    switch (type) {
    case LH_TYPE_F32: return 4;
    case LH_TYPE_F16: case LH_TYPE_BF16: return 2;
    case LH_TYPE_Q4_0: return 18;   // f16 d, 16 bytes of nibbles
    case LH_TYPE_Q4_1: return 20;   // f16 d, f16 m, 16 bytes of nibbles
    case LH_TYPE_Q5_0: return 22;   // f16 d, 4 bytes of fifth bits, 16 bytes of nibbles
    case LH_TYPE_Q5_1: return 24;   // f16 d, f16 m, 4 bytes of fifth bits, 16 bytes of nibbles
    case LH_TYPE_Q8_0: return 34;   // f16 d, 32 int8
    case LH_TYPE_Q4_K: return 144;  // f16 d, f16 dmin, 12 bytes scales, 128 bytes nibbles
    case LH_TYPE_Q5_K: return 176;  // as Q4_K plus 32 bytes of high bits
    case LH_TYPE_Q6_K: return 210;  // 128 ql, 64 qh, 16 int8 scales, f16 d
    default: return 0;
    }
}

int64_t lh_type_row_bytes(int type, int64_t n) {
    int64_t bs = lh_type_block_size(type);
    if (bs == 0 || n < 0 || n % bs != 0) return -1;
    return n / bs * lh_type_block_bytes(type);
}

// ---------------------------------------------------------------------------------------------
// Half precision

float lh_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        // Zero or subnormal: man * 2^-24 is exact in float.
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t lh_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return sign | 0x7c00 | (x > 0x7f800000u ? 0x200 : 0);
    if (x >= 0x477ff000u) return sign | 0x7c00; // rounds to >= 65520: infinity
    if (x < 0x38800000u) {
        // Below the smallest normal half: the subnormal mantissa is round(|f| * 2^24).
        float v;
        memcpy(&v, &x, 4);
        return sign | (uint16_t)lh_round_even(v * 0x1p24f);
    }
    // Rebias the exponent and round to nearest even on the 13 dropped mantissa bits.
    uint32_t r = (x - (112u << 23) + 0xfffu + ((x >> 13) & 1u)) >> 13;
    return sign | (uint16_t)r;
}

float lh_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float rdh(const uint8_t *p) { return lh_fp16_to_fp32(rd16(p)); }

// ---------------------------------------------------------------------------------------------
// Reference dequantization (follows the ggml block definitions)

// 6-bit scale and min of sub-block j (0..7) in the 12-byte K-quant scale array.
static void kq_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Unsigned quants u[32] and the affine map x = d*u + m of 32-element sub-block `sub` of a
// block. Defined for the types that the packed format stores exactly.
static void exact_block(int type, const uint8_t *blk, int sub, uint8_t *u, float *d, float *m) {
    switch (type) {
    case LH_TYPE_Q4_0:
    case LH_TYPE_Q4_1: {
        const uint8_t *qs = blk + (type == LH_TYPE_Q4_0 ? 2 : 4);
        for (int j = 0; j < 16; j++) {
            u[j] = qs[j] & 0xF;
            u[j + 16] = qs[j] >> 4;
        }
        *d = rdh(blk);
        *m = type == LH_TYPE_Q4_0 ? -8.0f * *d : rdh(blk + 2);
        break;
    }
    case LH_TYPE_Q5_0:
    case LH_TYPE_Q5_1: {
        // ggml block_q5_0 {d, qh[4], qs[16]} / block_q5_1 {d, m, qh[4], qs[16]}: element j < 16 is
        // the low nibble of qs[j] with fifth bit j of the little-endian u32 qh, element j + 16 the
        // high nibble with bit j + 16. Q5_0 is d * (q - 16); stored as u = q + 112 so that the
        // 8-bit symmetric form d * u - 128 d gives it exactly (d is f16, u < 2^8: no rounding).
        const int off = type == LH_TYPE_Q5_0 ? 2 : 4;
        const uint8_t *qh = blk + off, *qs = blk + off + 4;
        const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                           (uint32_t)qh[3] << 24;
        const int bias = type == LH_TYPE_Q5_0 ? 112 : 0;
        for (int j = 0; j < 16; j++) {
            u[j] = (uint8_t)((qs[j] & 0xF) + (((h >> j) & 1) << 4) + bias);
            u[j + 16] = (uint8_t)((qs[j] >> 4) + (((h >> (j + 16)) & 1) << 4) + bias);
        }
        *d = rdh(blk);
        *m = type == LH_TYPE_Q5_0 ? -128.0f * *d : rdh(blk + 2);
        break;
    }
    case LH_TYPE_Q8_0: {
        const int8_t *qs = (const int8_t *)(blk + 2);
        for (int j = 0; j < 32; j++) u[j] = (uint8_t)(qs[j] + 128);
        *d = rdh(blk);
        *m = -128.0f * *d;
        break;
    }
    case LH_TYPE_Q4_K:
    case LH_TYPE_Q5_K: {
        // Sub-blocks pair up on 32 bytes of nibbles: even sub-block = low nibbles.
        const uint8_t *scales = blk + 4;
        const uint8_t *qs = blk + (type == LH_TYPE_Q4_K ? 16 : 48);
        const uint8_t *qh = blk + 16;
        int sc, mn;
        kq_scale_min(sub, scales, &sc, &mn);
        const uint8_t *q = qs + (sub / 2) * 32;
        int shift = (sub & 1) * 4;
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift) & 0xF;
            if (type == LH_TYPE_Q5_K && (qh[l] >> sub) & 1) v += 16;
            u[l] = (uint8_t)v;
        }
        *d = rdh(blk) * (float)sc;
        *m = -(rdh(blk + 2) * (float)mn);
        break;
    }
    default:
        break;
    }
}

static void dequant_q6_K(const uint8_t *blk, float *y) {
    const uint8_t *ql = blk;
    const uint8_t *qh = blk + 128;
    const int8_t *sc = (const int8_t *)(blk + 192);
    const float d = rdh(blk + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[n + l] = d * (float)sc[is] * (float)q1;
            y[n + l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[n + l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[n + l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

int lh_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    int64_t bs = lh_type_block_size(type);
    if (bs == 0 || n < 0 || n % bs != 0) return -1;
    const uint8_t *s = (const uint8_t *)src;
    int64_t nb = n / bs, bb = lh_type_block_bytes(type);
    switch (type) {
    case LH_TYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        return 0;
    case LH_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = rdh(s + 2 * i);
        return 0;
    case LH_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = lh_bf16_to_fp32(rd16(s + 2 * i));
        return 0;
    case LH_TYPE_Q6_K:
        for (int64_t b = 0; b < nb; b++) dequant_q6_K(s + b * bb, dst + b * 256);
        return 0;
    default: {
        uint8_t u[32];
        float d, m;
        int subs = (int)(bs / 32);
        for (int64_t b = 0; b < nb; b++) {
            for (int sb = 0; sb < subs; sb++) {
                exact_block(type, s + b * bb, sb, u, &d, &m);
                float *y = dst + b * bs + sb * 32;
                for (int j = 0; j < 32; j++) y[j] = d * (float)u[j] + m;
            }
        }
        return 0;
    }
    }
}

int lh_ref_matmul(int type, const void *w, int64_t rows, int64_t cols, const float *x,
                  int32_t tokens, float *out) {
    int64_t rb = lh_type_row_bytes(type, cols);
    if (rb < 0 || rows < 0 || tokens < 0) return -1;
    float *row = malloc((size_t)(cols > 0 ? cols : 1) * sizeof(float));
    if (!row) return -1;
    for (int64_t r = 0; r < rows; r++) {
        lh_dequantize_row(type, (const uint8_t *)w + r * rb, row, cols);
        for (int32_t t = 0; t < tokens; t++) {
            double s = 0;
            const float *xt = x + (int64_t)t * cols;
            for (int64_t k = 0; k < cols; k++) s += (double)row[k] * (double)xt[k];
            out[(int64_t)t * rows + r] = (float)s;
        }
    }
    free(row);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Packing

static void *aligned_zalloc(size_t bytes) {
    size_t sz = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, sz ? sz : 64);
    if (p) memset(p, 0, sz ? sz : 64);
    return p;
}

static inline uint8_t *tile_q(const lh_packed *p, int32_t rt, int32_t b) {
    return p->qdata + ((size_t)rt * p->nblocks + b) * p->quant_bytes;
}
static inline uint8_t *tile_s(const lh_packed *p, int32_t rt, int32_t b) {
    return p->sdata + ((size_t)rt * p->nblocks + b) * p->scale_bytes;
}

// Stores u[32], d, m as row rr (0..15) of tile (rt, b).
static void tile_put(const lh_packed *p, int32_t rt, int32_t b, int rr, const uint8_t *u,
                     float d, float m) {
    uint8_t *q = tile_q(p, rt, b), *s = tile_s(p, rt, b);
    if (p->bits == 4) {
        for (int k = 0; k < 16; k++)
            q[64 * (k / 4) + 4 * rr + k % 4] = (uint8_t)((u[k] & 0xF) | ((u[k + 16] & 0xF) << 4));
    } else {
        for (int k = 0; k < 32; k++) q[64 * (k / 4) + 4 * rr + k % 4] = u[k];
    }
    if (p->scale_mode == LH_SCALES_F32) {
        ((float *)s)[rr] = d;
        ((float *)s)[16 + rr] = m;
    } else {
        // Only used for types whose scales are f16 in the source: the conversion is exact.
        ((uint16_t *)s)[rr] = lh_fp32_to_fp16(d);
        if (p->scale_mode == LH_SCALES_F16) ((uint16_t *)s)[16 + rr] = lh_fp32_to_fp16(m);
    }
}

static void tile_get(const lh_packed *p, int32_t rt, int32_t b, int rr, uint8_t *u, float *d,
                     float *m) {
    const uint8_t *q = tile_q(p, rt, b), *s = tile_s(p, rt, b);
    if (p->bits == 4) {
        for (int k = 0; k < 16; k++) {
            uint8_t byte = q[64 * (k / 4) + 4 * rr + k % 4];
            u[k] = byte & 0xF;
            u[k + 16] = byte >> 4;
        }
    } else {
        for (int k = 0; k < 32; k++) u[k] = q[64 * (k / 4) + 4 * rr + k % 4];
    }
    switch (p->scale_mode) {
    case LH_SCALES_F32:
        *d = ((const float *)s)[rr];
        *m = ((const float *)s)[16 + rr];
        break;
    case LH_SCALES_F16:
        *d = lh_fp16_to_fp32(((const uint16_t *)s)[rr]);
        *m = lh_fp16_to_fp32(((const uint16_t *)s)[16 + rr]);
        break;
    default:
        *d = lh_fp16_to_fp32(((const uint16_t *)s)[rr]);
        *m = -(float)(1 << (p->bits - 1)) * *d;
        break;
    }
}

int64_t lh_packed_bytes(const lh_packed *p) {
    return (int64_t)p->row_tiles * p->nblocks * (p->quant_bytes + p->scale_bytes);
}

// Asymmetric 8-bit quantization of 32 floats: x ~ d*u + m with m = min, d = (max-min)/255.
static void requant8(const float *x, uint8_t *u, float *d, float *m) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    float dd = (mx - mn) / 255.0f;
    if (!(dd > 0) || !lh_isfinite(dd)) {
        // Constant block (or non-finite data): represent the first value exactly.
        for (int j = 0; j < 32; j++) u[j] = 0;
        *d = 0;
        *m = lh_isfinite(mn) ? mn : 0;
        return;
    }
    float id = 1.0f / dd;
    for (int j = 0; j < 32; j++) {
        float v = lh_round_even((x[j] - mn) * id);
        u[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    *d = dd;
    *m = mn;
}

int lh_pack(lh_packed *out, int type, const void *data, int64_t rows, int64_t cols) {
    memset(out, 0, sizeof(*out));
    int64_t bs = lh_type_block_size(type);
    if (bs == 0) return LH_ERR_TYPE;
    if (rows < 1 || cols < 32 || cols % 32 != 0 || cols % bs != 0 || rows > INT32_MAX ||
        cols > INT32_MAX)
        return LH_ERR_SHAPE;
    lh_packed P = {0};
    P.exact = 1;
    switch (type) {
    case LH_TYPE_Q4_0: P.bits = 4; P.scale_mode = LH_SCALES_F16_SYM; break;
    case LH_TYPE_Q4_1: P.bits = 4; P.scale_mode = LH_SCALES_F16; break;
    case LH_TYPE_Q4_K: P.bits = 4; P.scale_mode = LH_SCALES_F32; break;
    case LH_TYPE_Q8_0: P.bits = 8; P.scale_mode = LH_SCALES_F16_SYM; break;
    case LH_TYPE_Q5_0: P.bits = 8; P.scale_mode = LH_SCALES_F16_SYM; break;
    case LH_TYPE_Q5_1: P.bits = 8; P.scale_mode = LH_SCALES_F16; break;
    case LH_TYPE_Q5_K: P.bits = 8; P.scale_mode = LH_SCALES_F32; break;
    default: P.bits = 8; P.scale_mode = LH_SCALES_F32; P.exact = 0; break;
    }
    P.rows = (int32_t)rows;
    P.cols = (int32_t)cols;
    P.row_tiles = (int32_t)((rows + 15) / 16);
    P.nblocks = (int32_t)(cols / 32);
    P.src_type = type;
    P.quant_bytes = lh_tile_quant_bytes(P.bits);
    P.scale_bytes = P.scale_mode == LH_SCALES_F32 ? 128 : P.scale_mode == LH_SCALES_F16 ? 64 : 32;
    size_t tiles = (size_t)P.row_tiles * P.nblocks;
    P.qdata = aligned_zalloc(tiles * (P.quant_bytes + P.scale_bytes));
    if (!P.qdata) return LH_ERR_MEMORY;
    P.sdata = P.qdata + tiles * P.quant_bytes;
    float *tmp = NULL;
    if (!P.exact) {
        tmp = malloc((size_t)cols * sizeof(float));
        if (!tmp) {
            free(P.qdata);
            return LH_ERR_MEMORY;
        }
    }
    int64_t rb = lh_type_row_bytes(type, cols), bb = lh_type_block_bytes(type);
    uint8_t u[32];
    float d, m;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = (const uint8_t *)data + r * rb;
        int32_t rt = (int32_t)(r / 16);
        int rr = (int)(r % 16);
        if (P.exact) {
            int64_t subs = bs / 32;
            for (int32_t b = 0; b < P.nblocks; b++) {
                exact_block(type, src + (b / subs) * bb, (int)(b % subs), u, &d, &m);
                tile_put(&P, rt, b, rr, u, d, m);
            }
        } else {
            lh_dequantize_row(type, src, tmp, cols);
            for (int32_t b = 0; b < P.nblocks; b++) {
                requant8(tmp + 32 * b, u, &d, &m);
                tile_put(&P, rt, b, rr, u, d, m);
            }
        }
    }
    free(tmp);
    *out = P;
    return LH_OK;
}

void lh_packed_free(lh_packed *p) {
    if (!p) return;
    free(p->qdata);
    memset(p, 0, sizeof(*p));
}

void lh_packed_dequantize_row(const lh_packed *p, int32_t r, float *dst) {
    uint8_t u[32];
    float d, m;
    for (int32_t b = 0; b < p->nblocks; b++) {
        tile_get(p, r / 16, b, r % 16, u, &d, &m);
        for (int j = 0; j < 32; j++) dst[32 * b + j] = d * (float)u[j] + m;
    }
}

// ---------------------------------------------------------------------------------------------
// Activations

int lh_qact_init(lh_qact *a, int32_t cols, int32_t max_tokens, int32_t precision) {
    memset(a, 0, sizeof(*a));
    if (cols < 32 || cols % 32 != 0 || max_tokens < 1 ||
        (precision != LH_ACT_INT8 && precision != LH_ACT_INT16_SPLIT))
        return LH_ERR_SHAPE;
    int32_t nb = cols / 32, planes = precision == LH_ACT_INT16_SPLIT ? 2 : 1;
    a->q = aligned_zalloc((size_t)max_tokens * cols * planes);
    a->ds = aligned_zalloc((size_t)max_tokens * nb * 2 * sizeof(float));
    if (!a->q || !a->ds) {
        lh_qact_free(a);
        return LH_ERR_MEMORY;
    }
    a->cols = cols;
    a->nblocks = nb;
    a->max_tokens = max_tokens;
    a->precision = precision;
    a->planes = planes;
    return LH_OK;
}

void lh_qact_free(lh_qact *a) {
    if (!a) return;
    free(a->q);
    free(a->ds);
    memset(a, 0, sizeof(*a));
}

void lh_qact_dequantize(const lh_qact *a, int32_t t, float *dst) {
    const int bb = 32 * a->planes;
    for (int32_t b = 0; b < a->nblocks; b++) {
        size_t i = (size_t)b * a->tokens + t;
        float s = a->ds[2 * i];
        const int8_t *q = a->q + bb * i;
        for (int j = 0; j < 32; j++) {
            int32_t Q = a->planes == 2 ? LH_ACT_SPLIT_SCALE * q[j] + q[32 + j] : q[j];
            dst[32 * b + j] = s * (float)Q;
        }
    }
}

void lh_quant_scalar(lh_qact *a, const float *x, int64_t ldx, int32_t t0, int32_t t1) {
    const bool split = a->planes == 2;
    for (int32_t t = t0; t < t1; t++) {
        for (int32_t b = 0; b < a->nblocks; b++) {
            const float *xb = x + t * ldx + 32 * b;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = (lh_absf(xb[j]) > amax ? lh_absf(xb[j]) : amax);
            float da = amax / 127.0f;
            float id = amax > 0 ? 127.0f / amax : 0.0f;
            size_t i = (size_t)b * a->tokens + t;
            int8_t *q = a->q + 32 * a->planes * i;
            int32_t sum = 0;
            for (int j = 0; j < 32; j++) {
                // Same products, rounding (nearest even) and clamps as the SIMD conversions.
                float v = xb[j] * id;
                float h = lh_round_even(v);
                h = h > 127 ? 127 : h < -127 ? -127 : h;
                q[j] = (int8_t)h;
                if (split) {
                    // v - h is exact (h is v rounded; |v| <= 127 up to a rounding of id),
                    // so |(v - h) * 254| <= 127; the clamp only guards non-finite input.
                    float l = lh_round_even((v - h) * (float)LH_ACT_SPLIT_SCALE);
                    l = l > 127 ? 127 : l < -127 ? -127 : l;
                    q[32 + j] = (int8_t)l;
                    sum += LH_ACT_SPLIT_SCALE * q[j] + q[32 + j];
                } else {
                    sum += q[j];
                }
            }
            float s = split ? da / (float)LH_ACT_SPLIT_SCALE : da;
            a->ds[2 * i] = s;
            a->ds[2 * i + 1] = s * (float)sum;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar matmul over the packed format

void lh_mm_scalar(const lh_mm_args *args, int32_t rt0, int32_t rt1) {
    const lh_packed *w = args->w;
    const lh_qact *a = args->a;
    int32_t nb = w->nblocks;
    // One row tile unpacked to bytes: [block][row][32], plus d and m.
    uint8_t *u = malloc((size_t)nb * 16 * 32);
    float *dm = malloc((size_t)nb * 32 * sizeof(float));
    if (!u || !dm) abort();
    for (int32_t rt = rt0; rt < rt1; rt++) {
        for (int32_t b = 0; b < nb; b++)
            for (int rr = 0; rr < 16; rr++)
                tile_get(w, rt, b, rr, u + (b * 16 + rr) * 32, &dm[b * 32 + rr],
                         &dm[b * 32 + 16 + rr]);
        int nrows = w->rows - rt * 16 < 16 ? w->rows - rt * 16 : 16;
        const int bb = 32 * a->planes;
        for (int32_t t = 0; t < args->tokens; t++) {
            float acc[16] = {0};
            for (int32_t b = 0; b < nb; b++) {
                size_t i = (size_t)b * a->tokens + args->t0 + t;
                const int8_t *q = a->q + bb * i;
                float s = a->ds[2 * i], sa = a->ds[2 * i + 1];
                for (int rr = 0; rr < nrows; rr++) {
                    const uint8_t *ur = u + (b * 16 + rr) * 32;
                    int32_t dot = 0;
                    for (int j = 0; j < 32; j++) dot += (int32_t)ur[j] * q[j];
                    if (a->planes == 2) {
                        // |dot| <= 32 * 255 * 127, so 254 * dot + dot_lo fits in int32.
                        int32_t lo = 0;
                        for (int j = 0; j < 32; j++) lo += (int32_t)ur[j] * q[32 + j];
                        dot = LH_ACT_SPLIT_SCALE * dot + lo;
                    }
                    acc[rr] += (float)dot * (dm[b * 32 + rr] * s);
                    acc[rr] += dm[b * 32 + 16 + rr] * sa;
                }
            }
            float *o = args->out + t * args->ldo + rt * 16;
            for (int rr = 0; rr < nrows; rr++) o[rr] = acc[rr];
        }
    }
    free(u);
    free(dm);
}
