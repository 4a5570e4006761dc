/* Tests engine/pool.c: every job runs on its caller and on each helper once;
 * the helpers are made once, not per job; a caller never waits for another
 * caller's job; a pool not started (or stopped) runs jobs on the caller. */
#include "engine/pool.h"
#include "tests/test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct job {
    atomic_int calls;
} job;

static void count_call(void *arg)
{
    atomic_fetch_add(&((job *)arg)->calls, 1);
}

static void test_every_helper_once_per_job(void)
{
    int before = test_thread_count();
    oe_pool *p = oe_pool_new(3);
    ASSERT_TRUE(p != NULL);
    if (!p)
        return;
    ASSERT_EQ(test_thread_count(), before); /* new makes no thread */
    ASSERT_EQ(oe_pool_start(p), 3);
    ASSERT_EQ(oe_pool_threads(p), 3);
    ASSERT_EQ(test_thread_count(), before + 3);
    for (int i = 0; i < 2000; i++) {
        job j;
        atomic_init(&j.calls, 0);
        oe_pool_run(p, count_call, &j);
        if (atomic_load(&j.calls) != 4) {
            ASSERT_EQ(atomic_load(&j.calls), 4);
            break;
        }
    }
    ASSERT_EQ(test_thread_count(), before + 3); /* no thread per job */
    oe_pool_stop(p);
    ASSERT_EQ(test_thread_count(), before);
    job j;
    atomic_init(&j.calls, 0);
    oe_pool_run(p, count_call, &j); /* stopped: the caller alone */
    ASSERT_EQ(atomic_load(&j.calls), 1);
    oe_pool_free(p);
}

static void test_not_started_runs_on_the_caller(void)
{
    oe_pool *p = oe_pool_new(4);
    job j;
    atomic_init(&j.calls, 0);
    oe_pool_run(p, count_call, &j);
    ASSERT_EQ(atomic_load(&j.calls), 1);
    oe_pool_run(NULL, count_call, &j);
    ASSERT_EQ(atomic_load(&j.calls), 2);
    oe_pool_free(p);
    oe_pool *none = oe_pool_new(0);
    ASSERT_EQ(oe_pool_start(none), 0);
    oe_pool_run(none, count_call, &j);
    ASSERT_EQ(atomic_load(&j.calls), 3);
    oe_pool_free(none);
}

/* Callers on several threads at once: each job runs either with every
 * helper (1 + 2 calls) or, while the pool is busy, on its caller alone
 * (1 call); every job completes and the pool is used. */
typedef struct caller {
    oe_pool *pool;
    int bad, helped;
} caller;

static void *caller_main(void *arg)
{
    caller *c = arg;
    for (int i = 0; i < 3000; i++) {
        job j;
        atomic_init(&j.calls, 0);
        oe_pool_run(c->pool, count_call, &j);
        int n = atomic_load(&j.calls);
        c->bad += n != 1 && n != 3;
        c->helped += n == 3;
    }
    return NULL;
}

static void test_concurrent_callers(void)
{
    oe_pool *p = oe_pool_new(2);
    ASSERT_EQ(oe_pool_start(p), 2);
    caller c[3] = {{p, 0, 0}, {p, 0, 0}, {p, 0, 0}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, caller_main, &c[i]), 0);
    int helped = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        ASSERT_EQ(c[i].bad, 0);
        helped += c[i].helped;
    }
    ASSERT_TRUE(helped > 0);
    oe_pool_free(p); /* stops the helpers too */
}

/* oe_pool_post hands the job to the helpers at once (they run it while
 * the poster does other work); oe_pool_join runs it on the poster too and
 * returns once every call has. A pool busy with a posted job takes no
 * other: that job runs on its caller alone. */
typedef struct gate {
    atomic_int calls;
    atomic_int open; /* helpers wait for it; the poster's own call does not */
} gate;

static void wait_at_gate(void *arg)
{
    gate *g = arg;
    atomic_fetch_add(&g->calls, 1);
    while (!atomic_load(&g->open))
        sched_yield();
}

static void test_post_then_join(void)
{
    oe_pool *p = oe_pool_new(2);
    ASSERT_EQ(oe_pool_start(p), 2);
    gate g;
    atomic_init(&g.calls, 0);
    atomic_init(&g.open, 0);
    int posted = oe_pool_post(p, wait_at_gate, &g);
    ASSERT_EQ(posted, 1);
    /* Both helpers are in the job while the poster has not joined. */
    for (int i = 0; i < 5000 && atomic_load(&g.calls) < 2; i++) /* up to 5 s */
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    ASSERT_EQ(atomic_load(&g.calls), 2);
    job other;
    atomic_init(&other.calls, 0);
    ASSERT_EQ(oe_pool_post(p, count_call, &other), 0); /* busy */
    oe_pool_join(p, count_call, &other, 0);            /* the caller alone */
    ASSERT_EQ(atomic_load(&other.calls), 1);
    atomic_store(&g.open, 1);
    oe_pool_join(p, wait_at_gate, &g, posted);
    ASSERT_EQ(atomic_load(&g.calls), 3);
    job again; /* free again */
    atomic_init(&again.calls, 0);
    oe_pool_run(p, count_call, &again);
    ASSERT_EQ(atomic_load(&again.calls), 3);
    oe_pool_free(p);
}

/* The CPUs each call of a job ran on, and the job's own wait: every
 * call waits (up to 2 s) until all have started, so that each helper takes
 * part and none finishes before the others are placed. */
typedef struct where_job {
    atomic_int started, n;
    int want;
    int cpu[8];
} where_job;

static void where_call(void *arg)
{
    where_job *j = arg;
    atomic_fetch_add(&j->started, 1);
    for (int i = 0; i < 2000 && atomic_load(&j->started) < j->want; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    int k = atomic_fetch_add(&j->n, 1);
    if (k < 8)
        j->cpu[k] = sched_getcpu();
}

static int allowed(int *first)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    *first = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set) && *first < 0)
            *first = c;
    return CPU_COUNT(&set);
}

typedef struct keep_case {
    oe_pool *p;
    int kept;
    int alone; /* the thread's affinity is one CPU afterwards */
    where_job w;
} keep_case;

/* On a thread of its own, so that the test's thread keeps its CPUs. */
static void *keep_thread(void *arg)
{
    keep_case *c = arg;
    c->kept = oe_pool_keep_caller(c->p);
    cpu_set_t set;
    c->alone = sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1 &&
               (c->kept < 0 || CPU_ISSET(c->kept, &set));
    oe_pool_run(c->p, where_call, &c->w);
    return NULL;
}

/* oe_pool_keep_caller: the caller keeps to the first CPU the process may
 * use and no helper runs there; nothing without helpers, and nothing when
 * the helpers take every CPU. */
static void test_caller_keeps_to_a_free_cpu(void)
{
    int first;
    int ncpu = allowed(&first);
    oe_pool *p = oe_pool_new(1);
    ASSERT_EQ(oe_pool_keep_caller(p), -1); /* no helper runs yet */
    ASSERT_EQ(oe_pool_keep_caller(NULL), -1);
    ASSERT_EQ(oe_pool_start(p), 1);
    keep_case c = {.p = p, .w = {.want = 2}};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, keep_thread, &c), 0);
    pthread_join(t, NULL);
    if (ncpu < 2) {
        ASSERT_EQ(c.kept, -1);
    } else {
        ASSERT_EQ(c.kept, first);
        ASSERT_TRUE(c.alone);
        ASSERT_EQ(atomic_load(&c.w.n), 2);
        /* The caller on its CPU, the helper elsewhere. */
        int on_first = (c.w.cpu[0] == first) + (c.w.cpu[1] == first);
        ASSERT_EQ(on_first, 1);
    }
    oe_pool_free(p);
    /* As many helpers as CPUs: none is left for the caller. */
    if (ncpu >= 2 && ncpu <= OE_POOL_MAX_THREADS) {
        p = oe_pool_new(ncpu);
        ASSERT_EQ(oe_pool_start(p), ncpu);
        keep_case all = {.p = p, .w = {.want = ncpu + 1}};
        ASSERT_EQ(pthread_create(&t, NULL, keep_thread, &all), 0);
        pthread_join(t, NULL);
        ASSERT_EQ(all.kept, -1);
        oe_pool_free(p);
    }
}

/* A loop's record: how often each index ran, and on which threads. */
typedef struct loop_log {
    atomic_int calls[1000];
    pthread_t caller;
    atomic_int off_caller; /* calls on another thread than the caller's */
} loop_log;

static void log_range(void *ctx, size_t begin, size_t end)
{
    loop_log *l = ctx;
    for (size_t i = begin; i < end; i++) {
        atomic_fetch_add(&l->calls[i], 1);
        if (!pthread_equal(pthread_self(), l->caller)) {
            atomic_fetch_add(&l->off_caller, 1);
        } else if (atomic_load(&l->off_caller) == 0) {
            /* Leave the helpers time to take part: the caller slows down
             * until one has (at most ~1 s over the loop). */
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
    }
}

static void loop_log_init(loop_log *l)
{
    for (int i = 0; i < 1000; i++)
        atomic_init(&l->calls[i], 0);
    l->caller = pthread_self();
    atomic_init(&l->off_caller, 0);
}

static int each_once(loop_log *l, size_t n)
{
    for (size_t i = 0; i < 1000; i++)
        if (atomic_load(&l->calls[i]) != (i < n ? 1 : 0))
            return 0;
    return 1;
}

static void run_loop(oe_pool *p, size_t n, size_t min, size_t chunk, loop_log *l)
{
    oe_pool_loop loop;
    oe_pool_loop_init(&loop, n, chunk, log_range, l);
    oe_pool_loop_join(p, &loop, oe_pool_loop_post(p, &loop, min));
}

/* oe_pool_loop_post/join: every index exactly once (for
 * chunks that divide the count and chunks that do not), shared with the
 * helpers; a loop below its minimum, or on a pool without helpers, runs on
 * the caller alone. */
static void test_loop_each_index_once(void)
{
    static loop_log l;
    oe_pool *p = oe_pool_new(2);
    ASSERT_EQ(oe_pool_start(p), 2);
    size_t counts[] = {1000, 999, 7, 1};
    size_t chunks[] = {8, 3, 1, 8};
    for (int k = 0; k < 4; k++) {
        loop_log_init(&l);
        run_loop(p, counts[k], 1, chunks[k], &l);
        ASSERT_TRUE(each_once(&l, counts[k]));
    }
    loop_log_init(&l);
    run_loop(p, 1000, 1, 8, &l);
    ASSERT_TRUE(atomic_load(&l.off_caller) > 0); /* the helpers took part */

    loop_log_init(&l);
    run_loop(p, 63, 64, 8, &l); /* below the minimum */
    ASSERT_TRUE(each_once(&l, 63));
    ASSERT_EQ(atomic_load(&l.off_caller), 0);

    loop_log_init(&l); /* in two steps, the caller busy in between */
    oe_pool_loop loop;
    oe_pool_loop_init(&loop, 500, 8, log_range, &l);
    int posted = oe_pool_loop_post(p, &loop, 64);
    ASSERT_EQ(posted, 1);
    for (int i = 0; i < 2000 && atomic_load(&l.off_caller) == 0; i++) /* up to 2 s */
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    ASSERT_TRUE(atomic_load(&l.off_caller) > 0); /* the helpers started without the caller */
    oe_pool_loop_join(p, &loop, posted);
    ASSERT_TRUE(each_once(&l, 500));

    loop_log_init(&l); /* a whole loop's bound is n: moving it does nothing */
    oe_pool_loop_init(&loop, 10, 4, log_range, &l);
    oe_pool_feed_ready(&loop, 400);
    oe_pool_loop_join(p, &loop, oe_pool_loop_post(p, &loop, 1));
    ASSERT_TRUE(each_once(&l, 10));
    oe_pool_free(p);

    oe_pool *none = oe_pool_new(0); /* no helper: the caller alone */
    loop_log_init(&l);
    run_loop(none, 100, 1, 8, &l);
    ASSERT_TRUE(each_once(&l, 100));
    ASSERT_EQ(atomic_load(&l.off_caller), 0);
    oe_pool_free(none);
}

/* A feed's record: the loop's, and whether each index was ready when it
 * ran. */
typedef struct feed_log {
    loop_log calls;
    atomic_int marked[1000]; /* set by the caller before the bound passes it */
    atomic_int early;        /* indexes run before they were ready */
} feed_log;

static void feed_range(void *ctx, size_t begin, size_t end)
{
    feed_log *f = ctx;
    for (size_t i = begin; i < end; i++)
        if (!atomic_load(&f->marked[i]))
            atomic_fetch_add(&f->early, 1);
    log_range(&f->calls, begin, end);
}

/* Runs a feed of n indexes made ready `step` at a time (the caller busy a
 * little between steps), ended at `last` (n: all made ready). */
static void run_feed(oe_pool *p, feed_log *f, size_t n, size_t step, size_t last)
{
    loop_log_init(&f->calls);
    for (int i = 0; i < 1000; i++)
        atomic_init(&f->marked[i], 0);
    atomic_init(&f->early, 0);
    oe_pool_loop loop;
    oe_pool_feed_init(&loop, n, 4, 16, feed_range, f);
    int posted = oe_pool_loop_post(p, &loop, 1);
    for (size_t r = 0; r < last;) {
        size_t to = last - r > step ? r + step : last;
        for (size_t i = r; i < to; i++)
            atomic_store(&f->marked[i], 1);
        oe_pool_feed_ready(&loop, to);
        r = to;
        nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
    }
    oe_pool_loop_join(p, &loop, posted);
}

/* oe_pool_feed_*: the helpers take only indexes made ready, each exactly
 * once, while the bound moves; a feed ended early runs exactly the indexes
 * made ready; without helpers the caller runs them all at the join. */
static void test_feed_runs_only_what_is_ready(void)
{
    static feed_log f;
    oe_pool *p = oe_pool_new(2);
    ASSERT_EQ(oe_pool_start(p), 2);
    size_t steps[] = {1, 7, 16, 1000};
    for (int k = 0; k < 4; k++) {
        run_feed(p, &f, 1000, steps[k], 1000);
        ASSERT_TRUE(each_once(&f.calls, 1000));
        ASSERT_EQ(atomic_load(&f.early), 0);
    }
    run_feed(p, &f, 1000, 5, 1000);
    ASSERT_TRUE(atomic_load(&f.calls.off_caller) > 0); /* the helpers took part */

    run_feed(p, &f, 1000, 9, 301); /* ended at 301: the rest never runs */
    ASSERT_TRUE(each_once(&f.calls, 301));
    ASSERT_EQ(atomic_load(&f.early), 0);

    run_feed(p, &f, 1000, 9, 0); /* nothing made ready */
    ASSERT_TRUE(each_once(&f.calls, 0));
    oe_pool_free(p);

    oe_pool *none = oe_pool_new(0);
    run_feed(none, &f, 200, 3, 200);
    ASSERT_TRUE(each_once(&f.calls, 200));
    ASSERT_EQ(atomic_load(&f.early), 0);
    ASSERT_EQ(atomic_load(&f.calls.off_caller), 0);
    oe_pool_free(none);
}

/* A feed whose bound stays still longer than its helpers look for more
 * (polling) has them waiting to be woken: each step made ready then is
 * run by a helper before the join, so the wake reached it, in steps of at
 * least `wake` (16) and of fewer (the helper woken at the next step's
 * first index past it). */
static void test_feed_wakes_a_waiting_helper(void)
{
    static feed_log f;
    oe_pool *p = oe_pool_new(1);
    ASSERT_EQ(oe_pool_start(p), 1);
    loop_log_init(&f.calls);
    for (int i = 0; i < 1000; i++)
        atomic_init(&f.marked[i], 0);
    atomic_init(&f.early, 0);
    oe_pool_loop loop;
    oe_pool_feed_init(&loop, 1000, 4, 16, feed_range, &f);
    int posted = oe_pool_loop_post(p, &loop, 1);
    ASSERT_EQ(posted, 1);
    size_t steps[] = {16, 40, 5, 30, 16};
    size_t to = 0;
    for (int k = 0; k < 5; k++) {
        /* 20 ms: past the helper's polling (20 looks 50 µs apart). */
        nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
        size_t from = to;
        to += steps[k];
        for (size_t i = from; i < to; i++)
            atomic_store(&f.marked[i], 1);
        oe_pool_feed_ready(&loop, to);
        if (steps[k] < 16) /* fewer than wake: no wake yet, the next step's */
            continue;
        int done = each_once(&f.calls, to);
        for (int w = 0; w < 2000 && !done; w++) { /* up to 2 s */
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
            done = each_once(&f.calls, to);
        }
        ASSERT_TRUE(done);
    }
    ASSERT_EQ(atomic_load(&f.calls.off_caller), (int)to); /* all by the helper */
    oe_pool_loop_join(p, &loop, posted);
    ASSERT_TRUE(each_once(&f.calls, to));
    ASSERT_EQ(atomic_load(&f.early), 0);
    oe_pool_free(p);
}

int main(void)
{
    RUN_TEST(test_every_helper_once_per_job);
    RUN_TEST(test_not_started_runs_on_the_caller);
    RUN_TEST(test_post_then_join);
    RUN_TEST(test_concurrent_callers);
    RUN_TEST(test_caller_keeps_to_a_free_cpu);
    RUN_TEST(test_loop_each_index_once);
    RUN_TEST(test_feed_runs_only_what_is_ready);
    RUN_TEST(test_feed_wakes_a_waiting_helper);
    return TEST_REPORT();
}
