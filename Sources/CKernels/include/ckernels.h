// CKernels: quantized matrix multiply, dequantization and a small thread pool for longheads.
//
// Weights arrive as raw GGUF/ggml block data and are repacked once (lh_pack) into an internal
// format built for int8 dot-product instructions (AVX-512 VNNI, AVX2), with a portable scalar
// fallback. Activations are quantized per token in blocks of 32 (lh_qact_quantize), to int8 or
// to two int8 planes ("int16 split", ~16-bit precision at twice the dot-product work).
// The SIMD path is chosen at run time from the CPU features, or forced with the environment
// variable LONGHEADS_KERNEL=scalar|avx2|avx512.
#ifndef LONGHEADS_CKERNELS_H
#define LONGHEADS_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// ggml tensor types (ids as stored in GGUF files)

enum {
    LH_TYPE_F32 = 0,
    LH_TYPE_F16 = 1,
    LH_TYPE_Q4_0 = 2,
    LH_TYPE_Q4_1 = 3,
    LH_TYPE_Q5_0 = 6,
    LH_TYPE_Q5_1 = 7,
    LH_TYPE_Q8_0 = 8,
    LH_TYPE_Q4_K = 12,
    LH_TYPE_Q5_K = 13,
    LH_TYPE_Q6_K = 14,
    LH_TYPE_BF16 = 30,
};

/// Elements per block of `type` (1 for F32/F16/BF16), or 0 if the type is not supported.
int64_t lh_type_block_size(int type);
/// Bytes per block of `type`, or 0 if the type is not supported.
int64_t lh_type_block_bytes(int type);
/// Bytes of a row of `n` elements, or -1 if unsupported or `n` is not a multiple of the block size.
int64_t lh_type_row_bytes(int type, int64_t n);

float lh_fp16_to_fp32(uint16_t h);
uint16_t lh_fp32_to_fp16(float f); // round to nearest even, overflow to inf
float lh_bf16_to_fp32(uint16_t h);

/// Reference (plain scalar) dequantization of `n` elements of ggml data. Returns 0, or -1 if
/// the type is unsupported or `n` is not a multiple of the block size.
int lh_dequantize_row(int type, const void *src, float *dst, int64_t n);

// ---------------------------------------------------------------------------------------------
// Thread pool

typedef struct lh_pool lh_pool;

/// Task callback: `task` in [0, ntasks); `thread` in [0, nthreads) identifies the executing
/// thread (0 = the caller), e.g. to pick per-thread scratch memory.
typedef void (*lh_task_fn)(void *ctx, int32_t task, int32_t thread);

/// Creates a pool whose `nthreads` includes the calling thread (nthreads-1 workers are started).
/// Returns NULL on failure. nthreads < 1 is treated as 1.
lh_pool *lh_pool_create(int32_t nthreads);
void lh_pool_destroy(lh_pool *pool);
int32_t lh_pool_threads(const lh_pool *pool);
/// Runs fn(ctx, task, thread) for every task in [0, ntasks) exactly once and returns when all
/// are done. The caller thread participates. `pool` may be NULL (runs inline). Calls made while
/// the pool is busy (from a task, or from another thread) run inline on the calling thread.
void lh_pool_run(lh_pool *pool, lh_task_fn fn, void *ctx, int32_t ntasks);

// ---------------------------------------------------------------------------------------------
// SIMD path selection

enum { LH_PATH_SCALAR = 0, LH_PATH_AVX2 = 1, LH_PATH_AVX512 = 2 };

/// 1 if the path can run on this CPU (and was compiled in).
int lh_path_supported(int path);
/// The path used by default: the best supported one, or LONGHEADS_KERNEL if set and supported.
int lh_active_path(void);
const char *lh_path_name(int path);

// ---------------------------------------------------------------------------------------------
// Packed weights: value = d * u + m, u unsigned 4 or 8 bits, d and m per 32 elements of a row.
// Rows are interleaved by 16 (row count padded with zeros). Two streams, each [row_tile][block]:
// quants (256 bytes per 16x32 tile for 4 bits, 512 for 8 bits; 64-byte vector p holds byte
// r*4+i = k 4p+i of row r, for 4 bits low nibble k=4p+i and high nibble k=16+4p+i) and scales
// (d[16] then m[16], format per scale_mode). Read-only after lh_pack.

enum {
    LH_SCALES_F32 = 0,     // float d[16], float m[16] (Q4_K, Q5_K, requantized types)
    LH_SCALES_F16 = 1,     // half d[16], half m[16]   (Q4_1, Q5_1)
    LH_SCALES_F16_SYM = 2, // half d[16], m = -2^(bits-1) * d (Q4_0, Q8_0, Q5_0 with u = q + 112)
};

typedef struct {
    int32_t rows, cols;
    int32_t row_tiles;   // ceil(rows / 16)
    int32_t nblocks;     // cols / 32
    int32_t bits;        // 4 or 8
    int32_t scale_mode;  // LH_SCALES_*
    int32_t src_type;    // the ggml type it was built from
    int32_t exact;       // 1 if the packed values equal the source values exactly
    int32_t quant_bytes; // bytes of one tile's quants
    int32_t scale_bytes; // bytes of one tile's scales
    uint8_t *qdata;      // [row_tiles][nblocks][quant_bytes], 64-byte aligned
    uint8_t *sdata;      // [row_tiles][nblocks][scale_bytes], 32-byte aligned (same allocation)
} lh_packed;

/// Bytes of packed data (quants + scales).
int64_t lh_packed_bytes(const lh_packed *p);

enum {
    LH_OK = 0,
    LH_ERR_TYPE = 1,   // unsupported type
    LH_ERR_SHAPE = 2,  // cols not a positive multiple of 32 (or of the 256 super-block), rows < 1
    LH_ERR_MEMORY = 3,
};

/// Builds the packed form of a row-major ggml matrix (`rows` x `cols`, out x in).
/// Q4_0, Q4_1, Q4_K are stored exactly with 4-bit u; Q8_0, Q5_0, Q5_1 and Q5_K exactly with
/// 8-bit u (Q4_0/Q4_1/Q8_0 keep their f16 scales, so they take the same bytes as the ggml data;
/// Q5_0/Q5_1 keep them too but spend a byte per 5-bit value, 34/36 bytes a block instead of 22/24);
/// Q6_K, F16, BF16, F32 are requantized to 8-bit asymmetric blocks of 32
/// (|error| <= (max - min) / 510 per block). On error `out` is zeroed.
int lh_pack(lh_packed *out, int type, const void *data, int64_t rows, int64_t cols);
void lh_packed_free(lh_packed *p);
/// The packed values of row `r` as floats (d*u+m), for tests and debugging.
void lh_packed_dequantize_row(const lh_packed *p, int32_t r, float *dst);

// ---------------------------------------------------------------------------------------------
// Quantized activations, per token and block of 32 values, with da = amax/127 and v = x/da:
//   LH_ACT_INT8:        q = round(v) in [-127, 127]; the block holds x ~ da * q.
//   LH_ACT_INT16_SPLIT: q_hi = round(v), q_lo = round((v - q_hi) * 254) (|v - q_hi| <= 1/2, so
//                       q_lo is in [-127, 127]); x ~ (da/254) * (254 q_hi + q_lo), about 16 bits.
//                       Costs twice the int8 dot products but cuts the rounding error ~250x.
// Either way a block stores a step s (da, or da/254) and the integers Q (q, or 254 q_hi + q_lo)
// with x ~ s * Q, plus sa = s * sum(Q), the sum of the block's dequantized values. The min term
// of the weights uses sa rather than the exact sum of x: then a block's result is exactly (up to
// float rounding) the weights times the dequantized activations, whose error sum(w * e) is 2-3.5x
// smaller than sum((w - m) * e) for the roughly zero-centred weights of real models.
// Layout: q[block][token][32 * planes] (planes = 1, or 2: q_hi[32] then q_lo[32]),
// ds[block][token][2] = {s, sa}.

enum {
    LH_ACT_INT8 = 0,
    LH_ACT_INT16_SPLIT = 1,
};
#define LH_ACT_SPLIT_SCALE 254

typedef struct {
    int32_t cols, nblocks, max_tokens;
    int32_t tokens;    // tokens held by the last quantize call (also the token stride)
    int32_t precision; // LH_ACT_*
    int32_t planes;    // int8 planes per block: 1 (int8) or 2 (int16 split)
    int8_t *q;
    float *ds;
} lh_qact;

/// `precision` is LH_ACT_INT8 or LH_ACT_INT16_SPLIT. Returns LH_OK, LH_ERR_SHAPE (cols not a
/// positive multiple of 32, max_tokens < 1, unknown precision) or LH_ERR_MEMORY.
int lh_qact_init(lh_qact *a, int32_t cols, int32_t max_tokens, int32_t precision);
void lh_qact_free(lh_qact *a);
/// Quantizes x[tokens][ldx] (first `cols` values of each row). `pool` may be NULL.
/// Aborts if tokens > max_tokens or ldx < cols (programming errors).
void lh_qact_quantize(lh_qact *a, const float *x, int32_t tokens, int64_t ldx, lh_pool *pool);
/// Same with an explicit path; every path produces bit-identical results. -1 if unsupported.
int lh_qact_quantize_path(int path, lh_qact *a, const float *x, int32_t tokens, int64_t ldx,
                          lh_pool *pool);
/// The quantized-then-dequantized values of token `t` (s * Q), for tests.
void lh_qact_dequantize(const lh_qact *a, int32_t t, float *dst);

// ---------------------------------------------------------------------------------------------
// Matrix multiply: out[t * ldo + r] = sum_k W[r][k] * X[first_token + t][k]
// for t in [0, tokens), r in [0, w->rows). Requires w->cols == a->cols and
// first_token + tokens <= a->tokens. `pool` may be NULL. Returns 0, or -1 on bad arguments.

int lh_matmul(const lh_packed *w, const lh_qact *a, int32_t first_token, int32_t tokens,
              float *out, int64_t ldo, lh_pool *pool);
/// Same with an explicit path (tests compare every path); -1 if the path is not supported.
int lh_matmul_path(int path, const lh_packed *w, const lh_qact *a, int32_t first_token,
                   int32_t tokens, float *out, int64_t ldo, lh_pool *pool);

/// Several (1...8) matrices sharing the same activations in one pool dispatch (e.g. q/k/v,
/// gate/up). outs[i] has stride ldos[i]. Returns -1 on bad arguments.
int lh_matmul_multi(int32_t count, const lh_packed *const *ws, const lh_qact *a,
                    int32_t first_token, int32_t tokens, float *const *outs, const int64_t *ldos,
                    lh_pool *pool);

/// Reference: float matmul of ggml weights (dequantized) with float activations
/// x[tokens][cols], accumulated in double. out[t * rows + r].
int lh_ref_matmul(int type, const void *w, int64_t rows, int64_t cols, const float *x,
                  int32_t tokens, float *out);

#ifdef __cplusplus
}
#endif

#endif
