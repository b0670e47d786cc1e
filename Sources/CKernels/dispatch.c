// Run-time selection of the SIMD path and the multithreaded drivers of matmul and activation
// quantization.
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int lh_path_supported(int path) {
    switch (path) {
    case LH_PATH_SCALAR:
        return 1;
#if LH_X86
    case LH_PATH_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    case LH_PATH_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    default:
        return 0;
    }
}

const char *lh_path_name(int path) {
    switch (path) {
    case LH_PATH_SCALAR: return "scalar";
    case LH_PATH_AVX2: return "avx2";
    case LH_PATH_AVX512: return "avx512";
    default: return "unknown";
    }
}

static _Atomic int g_path = -1;

int lh_active_path(void) {
    int p = atomic_load_explicit(&g_path, memory_order_relaxed);
    if (p >= 0) return p;
    p = LH_PATH_SCALAR;
    for (int c = LH_PATH_AVX512; c > LH_PATH_SCALAR; c--)
        if (lh_path_supported(c)) {
            p = c;
            break;
        }
    const char *env = getenv("LONGHEADS_KERNEL");
    if (env) {
        for (int c = LH_PATH_SCALAR; c <= LH_PATH_AVX512; c++)
            if (strcmp(env, lh_path_name(c)) == 0 && lh_path_supported(c)) p = c;
    }
    atomic_store_explicit(&g_path, p, memory_order_relaxed);
    return p;
}

static lh_mm_kernel mm_kernel(int path) {
    switch (path) {
#if LH_X86
    case LH_PATH_AVX2: return lh_mm_avx2;
    case LH_PATH_AVX512: return lh_mm_avx512;
#endif
    default: return lh_mm_scalar;
    }
}

static lh_quant_kernel quant_kernel(int path) {
    switch (path) {
#if LH_X86
    case LH_PATH_AVX2: return lh_quant_avx2;
    case LH_PATH_AVX512: return lh_quant_avx512;
#endif
    default: return lh_quant_scalar;
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization

typedef struct {
    lh_qact *a;
    const float *x;
    int64_t ldx;
    int32_t per_task, tokens;
    lh_quant_kernel kernel;
} quant_ctx;

static void quant_task(void *vctx, int32_t task, int32_t thread) {
    (void)thread;
    quant_ctx *c = vctx;
    int32_t t0 = task * c->per_task;
    int32_t t1 = t0 + c->per_task < c->tokens ? t0 + c->per_task : c->tokens;
    c->kernel(c->a, c->x, c->ldx, t0, t1);
}

int lh_qact_quantize_path(int path, lh_qact *a, const float *x, int32_t tokens, int64_t ldx,
                          lh_pool *pool) {
    if (tokens < 0 || tokens > a->max_tokens || ldx < a->cols || !lh_path_supported(path))
        return -1;
    a->tokens = tokens;
    quant_ctx c = {a, x, ldx, tokens, tokens, quant_kernel(path)};
    int32_t threads = lh_pool_threads(pool);
    // Below a few thousand elements per thread a dispatch costs more than it saves.
    if (threads > 1 && (int64_t)tokens * a->cols >= 8192 && tokens >= threads) {
        c.per_task = (tokens + threads - 1) / threads;
        lh_pool_run(pool, quant_task, &c, (tokens + c.per_task - 1) / c.per_task);
    } else if (tokens > 0) {
        quant_task(&c, 0, 0);
    }
    return 0;
}

void lh_qact_quantize(lh_qact *a, const float *x, int32_t tokens, int64_t ldx, lh_pool *pool) {
    if (lh_qact_quantize_path(lh_active_path(), a, x, tokens, ldx, pool) != 0) abort();
}

// ---------------------------------------------------------------------------------------------
// Matmul

#define LH_MAX_MULTI 8
#define LH_MAX_TASKS 256

typedef struct {
    lh_mm_args args[LH_MAX_MULTI];
    lh_mm_kernel kernel;
    // Task i covers row tiles [rt0[i], rt1[i]) of matrix mat[i].
    int32_t ntasks;
    uint8_t mat[LH_MAX_TASKS];
    int32_t rt0[LH_MAX_TASKS], rt1[LH_MAX_TASKS];
} mm_ctx;

static void mm_task(void *vctx, int32_t task, int32_t thread) {
    (void)thread;
    mm_ctx *c = vctx;
    c->kernel(&c->args[c->mat[task]], c->rt0[task], c->rt1[task]);
}

// Row tiles per task. Several tasks per thread, so that a thread that starts late (a worker
// waking from sleep) or runs slow does not hold up the others. With few tokens the AVX-512
// kernel works on 4 row tiles at once, so tasks then hold multiples of 4 tiles.
static int32_t chunk_tiles(int64_t total_tiles, int32_t threads, int32_t tokens) {
    if (threads <= 1) return (int32_t)(total_tiles > 0 ? total_tiles : 1);
    if (tokens <= 2) return 4;
    int64_t target = (int64_t)threads * 4;
    int64_t c = (total_tiles + target - 1) / target;
    return (int32_t)(c < 1 ? 1 : c);
}

static int mm_run(int path, int32_t count, const lh_packed *const *ws, const lh_qact *a,
                  int32_t first_token, int32_t tokens, float *const *outs, const int64_t *ldos,
                  lh_pool *pool) {
    if (count < 1 || count > LH_MAX_MULTI || !a || tokens < 0 || first_token < 0 ||
        first_token + tokens > a->tokens || !lh_path_supported(path))
        return -1;
    if (tokens == 0) return 0;
    mm_ctx c;
    c.kernel = mm_kernel(path);
    int64_t total = 0;
    for (int32_t i = 0; i < count; i++) {
        if (!ws[i] || !ws[i]->qdata || ws[i]->cols != a->cols || !outs[i] ||
            ldos[i] < ws[i]->rows)
            return -1;
        c.args[i] = (lh_mm_args){ws[i], a, first_token, tokens, outs[i], ldos[i]};
        total += ws[i]->row_tiles;
    }
    int32_t threads = lh_pool_threads(pool);
    int32_t chunk = chunk_tiles(total, threads, tokens);
    c.ntasks = 0;
    for (int32_t i = 0; i < count; i++) {
        int32_t rts = ws[i]->row_tiles;
        int32_t ch = chunk;
        // Keep the task table bounded for huge matrices.
        while ((rts + ch - 1) / ch > LH_MAX_TASKS / count) ch *= 2;
        for (int32_t r = 0; r < rts; r += ch) {
            c.mat[c.ntasks] = (uint8_t)i;
            c.rt0[c.ntasks] = r;
            c.rt1[c.ntasks] = r + ch < rts ? r + ch : rts;
            c.ntasks++;
        }
    }
    if (threads > 1 && c.ntasks > 1)
        lh_pool_run(pool, mm_task, &c, c.ntasks);
    else
        for (int32_t t = 0; t < c.ntasks; t++) mm_task(&c, t, 0);
    return 0;
}

int lh_matmul_path(int path, const lh_packed *w, const lh_qact *a, int32_t first_token,
                   int32_t tokens, float *out, int64_t ldo, lh_pool *pool) {
    return mm_run(path, 1, &w, a, first_token, tokens, &out, &ldo, pool);
}

int lh_matmul(const lh_packed *w, const lh_qact *a, int32_t first_token, int32_t tokens,
              float *out, int64_t ldo, lh_pool *pool) {
    return mm_run(lh_active_path(), 1, &w, a, first_token, tokens, &out, &ldo, pool);
}

int lh_matmul_multi(int32_t count, const lh_packed *const *ws, const lh_qact *a,
                    int32_t first_token, int32_t tokens, float *const *outs, const int64_t *ldos,
                    lh_pool *pool) {
    return mm_run(lh_active_path(), count, ws, a, first_token, tokens, outs, ldos, pool);
}
