/* The executor (executor.h): batches through the engine, and group commit
 * for requests that arrive one at a time. */
#include "executor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"

struct oe_executor {
    oe_engine *engine;
    oe_metrics *metrics;

    pthread_mutex_t lock; /* guards the queue, running and stopping */
    pthread_cond_t wake;
    oe_exec_job *head, *tail;
    pthread_t thread;
    int running;  /* the group-commit thread runs */
    int stopping; /* oe_executor_stop was called: refuse new jobs */
};

oe_rc oe_executor_new(oe_engine *engine, oe_metrics *metrics, oe_executor **out)
{
    *out = NULL;
    oe_executor *x = calloc(1, sizeof *x);
    if (!x)
        return OE_ENOMEM;
    x->engine = engine;
    x->metrics = metrics;
    pthread_mutex_init(&x->lock, NULL);
    pthread_cond_init(&x->wake, NULL);
    *out = x;
    return OE_OK;
}

oe_rc oe_executor_run(oe_executor *x, oe_batch_item *const *items, size_t n, oe_buf *checkpoint,
                      char *err, size_t errlen)
{
    if (checkpoint)
        oe_buf_reset(checkpoint);
    if (n == 0)
        return OE_OK;
    double t0 = oe_monotonic();
    int rc = oe_engine_process(x->engine, items, n, oe_wall_clock(), checkpoint, err, errlen);
    if (rc != OE_OK) {
        if (x->metrics)
            atomic_fetch_add(&x->metrics->store_errors, 1);
        return (oe_rc)rc;
    }
    /* Durable from here: the batch is committed. */
    if (x->metrics)
        oe_metrics_batch(x->metrics, items, n, oe_monotonic() - t0);
    return OE_OK;
}

void oe_executor_keep_caller(oe_executor *x)
{
    oe_engine_keep_caller(x->engine);
}

/* Takes what the queue holds, OE_EXECUTOR_GROUP_MAX at a time, runs it as
 * one batch and hands each job back, until stopped with the queue empty.
 * Its thread keeps to the CPU the engine's helpers leave free. */
static void *group_main(void *arg)
{
    oe_executor *x = arg;
    oe_executor_keep_caller(x);
    oe_exec_job *taken[OE_EXECUTOR_GROUP_MAX];
    oe_batch_item *items[OE_EXECUTOR_GROUP_MAX];
    char err[512];
    for (;;) {
        pthread_mutex_lock(&x->lock);
        while (!x->head && !x->stopping)
            pthread_cond_wait(&x->wake, &x->lock);
        size_t n = 0;
        while (x->head && n < OE_EXECUTOR_GROUP_MAX) {
            taken[n++] = x->head;
            x->head = x->head->next;
        }
        if (!x->head)
            x->tail = NULL;
        pthread_mutex_unlock(&x->lock);
        if (n == 0)
            break; /* stopping, nothing queued */
        for (size_t i = 0; i < n; i++)
            items[i] = &taken[i]->item;
        err[0] = '\0';
        oe_rc rc = oe_executor_run(x, items, n, NULL, err, sizeof err);
        /* done may hand the job back to its owner, who may free it. */
        for (size_t i = 0; i < n; i++)
            taken[i]->done(taken[i], rc, err);
    }
    return NULL;
}

oe_rc oe_executor_start(oe_executor *x, char *err, size_t errlen)
{
    pthread_mutex_lock(&x->lock);
    if (x->running || x->stopping) { /* a stopped executor is not restarted */
        pthread_mutex_unlock(&x->lock);
        snprintf(err, errlen, "executor already started");
        return OE_EINVAL;
    }
    if (pthread_create(&x->thread, NULL, group_main, x) != 0) {
        pthread_mutex_unlock(&x->lock);
        snprintf(err, errlen, "cannot start the executor's thread");
        return OE_EIO;
    }
    x->running = 1;
    pthread_mutex_unlock(&x->lock);
    return OE_OK;
}

oe_rc oe_executor_submit(oe_executor *x, oe_exec_job *job)
{
    pthread_mutex_lock(&x->lock);
    if (!x->running || x->stopping) {
        pthread_mutex_unlock(&x->lock);
        return OE_EUNAVAIL;
    }
    job->next = NULL;
    if (x->tail)
        x->tail->next = job;
    else
        x->head = job;
    x->tail = job;
    pthread_cond_signal(&x->wake);
    pthread_mutex_unlock(&x->lock);
    return OE_OK;
}

void oe_executor_stop(oe_executor *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&x->lock);
    x->stopping = 1;
    int running = x->running;
    x->running = 0; /* one caller joins */
    pthread_cond_signal(&x->wake);
    pthread_mutex_unlock(&x->lock);
    if (running)
        pthread_join(x->thread, NULL);
}

void oe_executor_free(oe_executor *x)
{
    if (!x)
        return;
    oe_executor_stop(x);
    pthread_cond_destroy(&x->wake);
    pthread_mutex_destroy(&x->lock);
    free(x);
}
