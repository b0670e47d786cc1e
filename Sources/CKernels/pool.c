// Low-latency thread pool. The pool is dispatched a few hundred times per decoded token, so a
// dispatch must cost about a microsecond: workers spin on a generation counter for a while
// before sleeping (futex on Linux, condition variable elsewhere), tasks are claimed with a CAS on
// a word that carries the job generation, and the caller only waits for task completion, never
// for workers that woke up too late to take part.
#define _GNU_SOURCE
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define LH_USE_FUTEX 1
#else
#define LH_USE_FUTEX 0
#endif

#if LH_X86
#include <immintrin.h>
static inline void cpu_relax(void) { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax(void) { __asm__ __volatile__("yield"); }
#else
static inline void cpu_relax(void) {}
#endif

// Spin iterations (each ~ a pause, tens of ns on Zen) before a worker goes to sleep: long enough
// to bridge the gaps between kernels of a decode step, short enough not to burn a core for long.
#define LH_SPIN_ITERS 20000

struct lh_pool {
    int32_t nthreads;
    pthread_t *threads;
    // Job word: generation (high 32 bits) | next task index (low 32 bits).
    _Alignas(64) _Atomic uint64_t job;
    _Alignas(64) _Atomic uint32_t gen;      // futex word: bumped for every job and on shutdown
    _Atomic int32_t sleepers;
    pthread_mutex_t run_mu;                 // serializes runs from different threads
    _Atomic int32_t stop;
    _Alignas(64) _Atomic int32_t done;      // tasks completed in the current job
    // Current job, published before `job`/`gen` are bumped (release) and read after (acquire).
    _Atomic(lh_task_fn) fn;
    _Atomic(void *) ctx;
    // Generation (high 32 bits) | task count (low 32 bits) of the current job. The count carries its
    // generation so that a worker still looking at an old job's word can never pair it with a newer
    // job's count: it would claim a task index of the old generation that the old job does not have
    // (run by the new job's function before that job is published, then again once it is).
    _Atomic uint64_t limit;
#if !LH_USE_FUTEX
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

typedef struct {
    lh_pool *pool;
    int32_t index;
} worker_arg;

static void wait_gen(lh_pool *p, uint32_t seen) {
    atomic_fetch_add(&p->sleepers, 1);
#if LH_USE_FUTEX
    while (atomic_load(&p->gen) == seen)
        syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->gen) == seen) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
#endif
    atomic_fetch_sub(&p->sleepers, 1);
}

static void wake_all(lh_pool *p) {
    // Pairs with the sleepers increment in wait_gen (both seq_cst): either we see the sleeper,
    // or the sleeper's futex/cond check sees the new generation.
    if (atomic_load(&p->sleepers) > 0) {
#if LH_USE_FUTEX
        syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
#else
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
#endif
    }
}

// Claims and runs tasks of generation g until none are left.
static void run_tasks(lh_pool *p, uint32_t g, int32_t thread) {
    uint64_t w = atomic_load(&p->job);
    for (;;) {
        if ((uint32_t)(w >> 32) != g) return;
        uint32_t i = (uint32_t)w;
        // The count must be generation g's: a newer one means g is over (all its tasks were done).
        // fn/ctx belong to g once the CAS below claims an index under g's count: g is then still
        // current with a task not done, and the caller cannot publish g+1 before it completes.
        uint64_t lim = atomic_load_explicit(&p->limit, memory_order_acquire);
        if ((uint32_t)(lim >> 32) != g || i >= (uint32_t)lim) return;
        if (atomic_compare_exchange_weak(&p->job, &w, w + 1)) {
            lh_task_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
            void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
            fn(ctx, (int32_t)i, thread);
            atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
            w = atomic_load(&p->job);
        }
    }
}

// The pool and thread index of the task running on this thread, so that a nested run (from
// inside a task) executes inline with the right thread index instead of deadlocking.
static _Thread_local lh_pool *tls_pool;
static _Thread_local int32_t tls_index;

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    lh_pool *p = wa.pool;
    tls_pool = p;
    tls_index = wa.index;
    // Generation 0 is the pool at creation: reading p->gen here instead would miss a shutdown (or a
    // job) published before this thread got to run, and sleep forever.
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < LH_SPIN_ITERS) {
                cpu_relax();
            } else {
                wait_gen(p, seen);
                spins = 0;
            }
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        run_tasks(p, g, wa.index);
    }
}

lh_pool *lh_pool_create(int32_t nthreads) {
    if (nthreads < 1) nthreads = 1;
    lh_pool *p = aligned_alloc(64, (sizeof(lh_pool) + 63) & ~(size_t)63);
    if (!p) return NULL;
    memset(p, 0, sizeof(*p));
    p->nthreads = nthreads;
    pthread_mutex_init(&p->run_mu, NULL);
#if !LH_USE_FUTEX
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    if (nthreads > 1) {
        p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
        if (!p->threads) {
            free(p);
            return NULL;
        }
        for (int32_t i = 1; i < nthreads; i++) {
            worker_arg *wa = malloc(sizeof(worker_arg));
            if (wa) {
                wa->pool = p;
                wa->index = i;
            }
            if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
                free(wa);
                p->nthreads = i; // destroy joins the ones that started
                lh_pool_destroy(p);
                return NULL;
            }
        }
    }
    return p;
}

void lh_pool_destroy(lh_pool *p) {
    if (!p) return;
    if (p->threads) {
        atomic_store(&p->stop, 1);
        atomic_fetch_add(&p->gen, 1);
        wake_all(p);
        for (int32_t i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
        free(p->threads);
    }
    pthread_mutex_destroy(&p->run_mu);
#if !LH_USE_FUTEX
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    free(p);
}

int32_t lh_pool_threads(const lh_pool *p) { return p ? p->nthreads : 1; }

void lh_pool_run(lh_pool *p, lh_task_fn fn, void *ctx, int32_t ntasks) {
    if (ntasks <= 0) return;
    if (!p || p->nthreads == 1 || ntasks == 1 || tls_pool == p) {
        int32_t thread = tls_pool == p ? tls_index : 0;
        for (int32_t i = 0; i < ntasks; i++) fn(ctx, i, thread);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    uint32_t g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->limit, ((uint64_t)g << 32) | (uint32_t)ntasks, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store(&p->job, (uint64_t)g << 32); // seq_cst: publishes the fields above
    atomic_store(&p->gen, g);
    wake_all(p);
    lh_pool *prev_pool = tls_pool; // restore afterwards: we may be a task of another pool
    int32_t prev_index = tls_index;
    tls_pool = p;
    tls_index = 0;
    run_tasks(p, g, 0);
    tls_pool = prev_pool;
    tls_index = prev_index;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < ntasks) cpu_relax();
    pthread_mutex_unlock(&p->run_mu);
}
