/* The helper pool (pool.h). One job at a time: the poster bumps the
 * generation, every helper runs the job once for that generation and counts
 * itself out; the poster waits for the count to reach zero before the pool
 * takes another job. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

struct oe_pool {
    pthread_mutex_t lock;
    pthread_cond_t work; /* a new generation, or stopping */
    pthread_cond_t done; /* the last helper of a job finished */
    pthread_t threads[OE_POOL_MAX_THREADS];
    int want;    /* helpers asked for */
    int started; /* helpers running */
    int stopping;
    int busy;                 /* a job is in flight */
    int running;              /* helpers still in the job in flight */
    unsigned long generation; /* of the job in flight, or the last one */
    unsigned long born;       /* the generation when the helpers were made */
    void (*fn)(void *);
    void *arg;
};

oe_pool *oe_pool_new(int helpers)
{
    oe_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->want = helpers < 0 ? 0 : helpers > OE_POOL_MAX_THREADS ? OE_POOL_MAX_THREADS : helpers;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    return p;
}

static void *helper_main(void *arg)
{
    oe_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    /* Not the generation now: a job posted between this thread's creation
     * and this line counted it in, and must be run. */
    unsigned long seen = p->born;
    for (;;) {
        while (!p->stopping && p->generation == seen)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stopping)
            break;
        seen = p->generation;
        void (*fn)(void *) = p->fn;
        void *a = p->arg;
        pthread_mutex_unlock(&p->lock);
        fn(a);
        pthread_mutex_lock(&p->lock);
        if (--p->running == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int oe_pool_start(oe_pool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    if (p->started == 0) { /* started once (again after a stop) */
        p->stopping = 0;
        p->born = p->generation;
        while (p->started < p->want &&
               pthread_create(&p->threads[p->started], NULL, helper_main, p) == 0)
            p->started++;
    }
    int n = p->started;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void oe_pool_run(oe_pool *p, void (*fn)(void *), void *arg)
{
    int helped = 0;
    if (p) {
        pthread_mutex_lock(&p->lock);
        if (p->started > 0 && !p->busy && !p->stopping) {
            p->busy = 1;
            p->fn = fn;
            p->arg = arg;
            p->running = p->started;
            p->generation++;
            helped = 1;
            pthread_cond_broadcast(&p->work);
        }
        pthread_mutex_unlock(&p->lock);
    }
    fn(arg);
    if (helped) {
        pthread_mutex_lock(&p->lock);
        while (p->running > 0)
            pthread_cond_wait(&p->done, &p->lock);
        p->busy = 0;
        pthread_mutex_unlock(&p->lock);
    }
}

void oe_pool_stop(oe_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    int n = p->started;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_lock(&p->lock);
    p->started = 0;
    pthread_mutex_unlock(&p->lock);
}

void oe_pool_free(oe_pool *p)
{
    if (!p)
        return;
    oe_pool_stop(p);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int oe_pool_threads(oe_pool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    int n = p->started;
    pthread_mutex_unlock(&p->lock);
    return n;
}
