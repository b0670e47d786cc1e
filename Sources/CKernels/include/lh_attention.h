#pragma once
// Softmax attention over float keys/values, as an online-softmax update (Milakov & Gimelshein 2018;
// FlashAttention's rescaling): callers may feed the keys of one query in any number of pieces
// (dense cache blocks, LongHeads chunk slots) and merge partial results exactly.
//
// Key layout: "transposed tiles" of 16 keys: tile t holds keys 16t..16t+15 as [d][16] floats, i.e.
// key j, dim d lives at Kt[(j / 16) * 16 * D + d * 16 + j % 16]. Scores of 16 keys are then 16-lane
// FMAs with the query broadcast, with no horizontal sums. Values are row-major [j][D] with stride ldv.
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Running state of one query's softmax: max score m, sum of exp l, unnormalized output acc[D].
/// Start with m = -INFINITY, l = 0, acc = 0; the result is acc / l.
typedef struct {
    float m;
    float l;
} lh_softmax_state;

/// Updates the states of `nq` queries (all attending to the same n keys, e.g. the query heads that
/// share one KV head) with keys [0, n): scores = scale · q·k, masked to -inf for key index ≥ limit[qi]
/// (causal masks; pass n for none). q: nq rows of D floats at stride ldq; acc: nq rows of D at stride lda.
/// `n` need not be a multiple of 16; the tile storage must cover ceil(n/16) tiles.
void lh_attn_update(const float *q, int32_t ldq, int32_t nq, int32_t D,
                    const float *Kt, const float *V, int32_t ldv, int32_t n, const int32_t *limit,
                    float scale, lh_softmax_state *state, float *acc, int32_t lda);

/// The plain C reference of lh_attn_update (tests compare the fast path to it).
void lh_attn_update_ref(const float *q, int32_t ldq, int32_t nq, int32_t D,
                        const float *Kt, const float *V, int32_t ldv, int32_t n, const int32_t *limit,
                        float scale, lh_softmax_state *state, float *acc, int32_t lda);

/// One page of K/V in the store's KIVI encoding (arXiv 2402.02750, section 3; cstoresupport.h in
/// CStoreSupport, Docs/STORE.md), as the page cache holds it: a parameter plane of IEEE-half {min, scale}
/// pairs (key groups [G][ceil(w/64)][D]: one channel over 64 tokens; then value groups [G][w]: one
/// token's row), then a code plane in the float page's order (keys [G][w/16][D][16] in the 16-key tiles
/// above, values [G][w][D]); q8 one byte per code, q4 two (element 2i in the low nibble of byte i).
/// Decoded value = min + code · scale (a product, then a sum).
typedef struct {
    const uint16_t *params;
    const uint8_t *codes;
    int32_t bits;     ///< 8 or 4
    int32_t kvHeads;  ///< G
    int32_t chunk;    ///< w, a multiple of 16
} lh_kivi_page;

/// lh_attn_update over KV head `g`'s keys [0, n) of an encoded page, dequantized inside the kernel one
/// 16-key tile at a time (the tile's keys and the same 16 tokens' value rows, into 2·16·D floats of
/// stack scratch consumed at once): the chunk's floats are never materialized. Bit-identical to
/// decoding the page (cs_kivi_decode) and then calling lh_attn_update on it: the dequantized floats
/// are the same, and every query folds the same tiles in the same order. n ≤ w; tiles past the
/// largest limit are not decoded.
void lh_attn_update_kivi(const float *q, int32_t ldq, int32_t nq, int32_t D,
                         const lh_kivi_page *page, int32_t g, int32_t n, const int32_t *limit,
                         float scale, lh_softmax_state *state, float *acc, int32_t lda);

/// The plain C reference of lh_attn_update_kivi (scalar dequantization, lh_attn_update_ref per tile).
void lh_attn_update_kivi_ref(const float *q, int32_t ldq, int32_t nq, int32_t D,
                             const lh_kivi_page *page, int32_t g, int32_t n, const int32_t *limit,
                             float scale, lh_softmax_state *state, float *acc, int32_t lda);

/// Stores key `k` (D floats) as key index j of a transposed-tile array.
static inline void lh_store_key_tiled(float *Kt, int32_t D, int32_t j, const float *k) {
    float *t = Kt + (int64_t)(j / 16) * 16 * D + j % 16;
    for (int32_t d = 0; d < D; d++) t[d * 16] = k[d];
}

/// Chunk selection scores of one query (LongHeads selection, `LongHeadsAttention.score`): for x < m,
///   out[x] = max over s < subs of  sum over d < D of  q[d] * slab[rows[s * D + d] * stride + x]
/// summed in order d = 0, 1, ... as a product then an add (never fused), so every path gives the same
/// bits as the plain loop. `rows` picks, per sub-chunk s and dimension d, a row of the transposed slab
/// ([row][chunk], `stride` floats per row, stride ≥ m and a multiple of 8; the slab must be readable up
/// to the stride).
void lh_chunk_scores(const float *q, int32_t D, const float *slab, int32_t stride, const int32_t *rows,
                     int32_t subs, int32_t m, float *out);

/// The plain C reference of lh_chunk_scores.
void lh_chunk_scores_ref(const float *q, int32_t D, const float *slab, int32_t stride, const int32_t *rows,
                         int32_t subs, int32_t m, float *out);

/// 1 if lh_attn_update uses AVX-512 (LONGHEADS_KERNEL=scalar forces the reference).
int32_t lh_attn_is_avx512(void);

#ifdef __cplusplus
}
#endif
