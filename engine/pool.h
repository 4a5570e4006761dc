/* A fixed pool of helper threads that share out one job at a time with
 * the thread that posts it (the engine's: the checks before a batch, a
 * signed batch's leaves while its rows go in, the outcomes' proofs and
 * receipts while it commits). No thread is made per job.
 *
 * Lifecycle: oe_pool_new allocates and starts nothing; oe_pool_start makes
 * the threads; oe_pool_stop joins them; oe_pool_free releases (stopping
 * first if needed). oe_pool_run may be called from any thread: while the
 * pool is not started, or busy with another caller's job, the job runs on
 * the caller's thread alone, so a caller never waits for another's job.
 */
#ifndef OE_POOL_H
#define OE_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct oe_pool oe_pool;

/* Most helper threads a pool may have. */
#define OE_POOL_MAX_THREADS 16

/* How many CPUs the process may use (its affinity: a cpuset or taskset
 * gives fewer than the machine has); 0 when unknown. */
int oe_pool_cpus(void);

/* A pool of at most `helpers` threads (0: every job runs on its caller).
 * NULL when out of memory. */
oe_pool *oe_pool_new(int helpers);

/* Starts the helpers; returns how many started (fewer when the system
 * refuses a thread: the pool then runs with those). */
int oe_pool_start(oe_pool *p);

/* Runs fn(arg) on the calling thread and, at the same time, on every
 * helper of the pool; returns once all calls have returned. fn shares the
 * work out itself (e.g. an atomic counter in arg). p may be NULL. */
void oe_pool_run(oe_pool *p, void (*fn)(void *), void *arg);

/* oe_pool_run in two steps, for a caller with other work meanwhile:
 * oe_pool_post hands fn(arg) to the helpers and returns at once, 1 when
 * they took it (0: the pool is not started, busy with another caller's
 * job, or stopping; nothing runs yet). oe_pool_join, called exactly once
 * after it on the same thread with the same fn, arg and that result, runs
 * fn(arg) on the calling thread too and returns once every call has. */
int oe_pool_post(oe_pool *p, void (*fn)(void *), void *arg);
void oe_pool_join(oe_pool *p, void (*fn)(void *), void *arg, int posted);

/* A loop over the indexes 0..n-1 shared out between the thread that
 * posts it and the helpers: each takes `chunk` indexes at a time (an
 * atomic counter) and calls run(ctx, begin, end) for them, so every index
 * is run exactly once whoever takes it. oe_pool_loop_post and oe_pool_loop_join
 * are oe_pool_post and oe_pool_join for it; a loop of fewer than `min`
 * indexes is not posted (it runs on the caller alone, at the join).
 *
 * A feed (oe_pool_feed_init) is a loop whose indexes become ready while it
 * runs: the helpers take only indexes below the bound that the posting
 * thread moves up (oe_pool_feed_ready), and look again for more (every 50
 * µs, 20 times), then wait to be woken; the join ends it at the bound it
 * has then, and runs what is left of it. */
typedef struct oe_pool_loop {
    void (*run)(void *ctx, size_t begin, size_t end);
    void *ctx;
    size_t n, chunk;
    atomic_size_t next;  /* the next index nobody has taken */
    atomic_size_t ready; /* indexes below it may be taken: n but in a feed */
    atomic_int closed;   /* ready moves no more: always but in a feed */
    /* A feed's: a helper that waits is woken once `wake` more are ready. */
    size_t wake, told;
    int feed;
    atomic_int sleepers; /* helpers waiting on `more` */
    pthread_mutex_t lock;
    pthread_cond_t more;
} oe_pool_loop;

void oe_pool_loop_init(oe_pool_loop *l, size_t n, size_t chunk,
                       void (*run)(void *ctx, size_t begin, size_t end), void *ctx);
/* A feed of at most n indexes, none ready yet. */
void oe_pool_feed_init(oe_pool_loop *l, size_t n, size_t chunk, size_t wake,
                       void (*run)(void *ctx, size_t begin, size_t end), void *ctx);
int oe_pool_loop_post(oe_pool *p, oe_pool_loop *l, size_t min);
/* Indexes [0, ready) of a feed may be run (ready <= n, never lowered); for a
 * whole loop it does nothing (all were ready from the start). */
void oe_pool_feed_ready(oe_pool_loop *l, size_t ready);
void oe_pool_loop_join(oe_pool *p, oe_pool_loop *l, int posted);

/* Keeps the calling thread to the first CPU the process may use, which no
 * helper keeps to (each keeps to one of the next), so that the thread that
 * posts jobs and the helpers never queue on one core while another is
 * idle. Nothing when no helper runs, when the process may use one CPU
 * only, or when it has no CPU left over for the caller (helpers as many as
 * its CPUs). Returns the CPU, or -1 when the thread was left where it was. */
int oe_pool_keep_caller(oe_pool *p);

/* Stops and joins the helpers (no job may be in flight); idempotent. */
void oe_pool_stop(oe_pool *p);
void oe_pool_free(oe_pool *p);

/* Helpers running now (for tests and metrics). */
int oe_pool_threads(oe_pool *p);

#endif
