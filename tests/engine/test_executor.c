/* Tests engine/executor.c: a batch run on the caller's thread is durable and
 * counted once; jobs submitted from many threads are group-committed (fewer
 * batches than jobs), each handed back exactly once with its own outcome;
 * stop answers what is queued and refuses what comes after. Real SQLite
 * ledger in a temporary directory. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/executor.h"
#include "ledger/ledger.h"
#include "tests/test.h"

static char dir[] = "/tmp/oe-test-executor-XXXXXX";

typedef struct {
    oe_store *store;
    oe_engine *engine;
    oe_metrics metrics;
    oe_executor *x;
} fixture;

static int open_fixture(fixture *f, const char *name)
{
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    memset(f, 0, sizeof *f);
    oe_metrics_init(&f->metrics);
    oe_engine_config ecfg = {.tenant = "", .allowed_actions = ""};
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &f->store, err, sizeof err) != 0 ||
        oe_engine_new(&ecfg, f->store, &f->engine, err, sizeof err) != 0 ||
        oe_executor_new(f->engine, &f->metrics, &f->x) != OE_OK) {
        OE_FAIL_("fixture: %s", err);
        return -1;
    }
    return 0;
}

static void close_fixture(fixture *f)
{
    oe_executor_free(f->x);
    oe_engine_free(f->engine);
    oe_store_free(f->store);
}

static int decode(oe_batch_item *it, const char *body, char *reason, size_t len)
{
    memset(it, 0, sizeof *it); /* no complete hook */
    oe_outcome_init(&it->out);
    it->decode_detail = reason;
    return oe_request_from_json(body, strlen(body), &it->req, &it->decode_error, reason, len);
}

static void test_run_is_one_durable_batch(void)
{
    fixture f;
    if (open_fixture(&f, "run.db") != 0)
        return;
    oe_batch_item it[3];
    oe_batch_item *items[3] = {&it[0], &it[1], &it[2]};
    char reasons[3][200], err[300];
    const char *bodies[3] = {
        "{\"action\":\"echo\",\"payload\":{\"a\":1},\"nonce\":\"r-1\"}",
        "{\"action\":\"add\",\"payload\":{\"a\":1,\"b\":2},\"nonce\":\"r-2\"}",
        "{\"action\":\"nope\",\"payload\":{},\"nonce\":\"r-3\"}",
    };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(decode(&it[i], bodies[i], reasons[i], sizeof reasons[i]), OE_OK);
    ASSERT_EQ(oe_executor_run(f.x, items, 3, NULL, err, sizeof err), OE_OK);
    ASSERT_EQ(it[0].out.status, OE_STATUS_EXECUTED);
    ASSERT_EQ(it[1].out.status, OE_STATUS_EXECUTED);
    ASSERT_EQ(it[2].out.status, OE_STATUS_REJECTED);
    ASSERT_EQ(atomic_load(&f.metrics.batch_count), 1);
    ASSERT_EQ(atomic_load(&f.metrics.batch_items), 3);
    ASSERT_EQ(oe_store_count_executions(f.store), 2);
    /* An empty batch is no batch. */
    ASSERT_EQ(oe_executor_run(f.x, items, 0, NULL, err, sizeof err), OE_OK);
    ASSERT_EQ(atomic_load(&f.metrics.batch_count), 1);
    for (int i = 0; i < 3; i++) {
        oe_outcome_clear(&it[i].out);
        oe_request_clear(&it[i].req);
    }
    close_fixture(&f);
}

/* One submitted request and what came back. */
typedef struct {
    oe_exec_job job;
    char reason[200];
    atomic_int done_calls;
    oe_rc rc;
    oe_status status;
    char id[37];
} sub;

static void on_done(oe_exec_job *job, oe_rc rc, const char *err)
{
    (void)err;
    sub *s = job->ctx;
    s->rc = rc;
    s->status = job->item.out.status;
    memcpy(s->id, job->item.out.id, sizeof s->id);
    oe_outcome_clear(&job->item.out);
    oe_request_clear(&job->item.req);
    atomic_fetch_add(&s->done_calls, 1);
}

#define THREADS 8
#define PER_THREAD 200

typedef struct {
    fixture *f;
    sub *subs;
    int t;
    int refused;
} submitter;

static void *submit_main(void *arg)
{
    submitter *sm = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        sub *s = &sm->subs[sm->t * PER_THREAD + i];
        char body[160];
        snprintf(body, sizeof body,
                 "{\"action\":\"echo\",\"payload\":{\"i\":%d},\"nonce\":\"g-%d\"}", i,
                 sm->t * PER_THREAD + i);
        if (decode(&s->job.item, body, s->reason, sizeof s->reason) != OE_OK) {
            sm->refused++;
            continue;
        }
        s->job.done = on_done;
        s->job.ctx = s;
        if (oe_executor_submit(sm->f->x, &s->job) != OE_OK) {
            oe_request_clear(&s->job.item.req);
            sm->refused++;
        }
    }
    return NULL;
}

static void test_submit_group_commits(void)
{
    fixture f;
    if (open_fixture(&f, "group.db") != 0)
        return;
    char err[300];
    sub *subs = calloc(THREADS * PER_THREAD, sizeof *subs);
    ASSERT_TRUE(subs != NULL);
    /* Not started: refused, and done is never called. */
    char reason[200];
    ASSERT_EQ(
        decode(&subs[0].job.item, "{\"action\":\"echo\",\"nonce\":\"x\"}", reason, sizeof reason),
        OE_OK);
    subs[0].job.done = on_done;
    subs[0].job.ctx = &subs[0];
    ASSERT_EQ(oe_executor_submit(f.x, &subs[0].job), OE_EUNAVAIL);
    oe_request_clear(&subs[0].job.item.req);
    ASSERT_EQ(atomic_load(&subs[0].done_calls), 0);

    ASSERT_EQ(oe_executor_start(f.x, err, sizeof err), OE_OK);
    pthread_t th[THREADS];
    submitter sm[THREADS];
    for (int t = 0; t < THREADS; t++) {
        sm[t] = (submitter){.f = &f, .subs = subs, .t = t};
        ASSERT_EQ(pthread_create(&th[t], NULL, submit_main, &sm[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        ASSERT_EQ(sm[t].refused, 0);
    }
    /* Stop answers everything queued before it returns. */
    oe_executor_stop(f.x);
    for (int i = 0; i < THREADS * PER_THREAD; i++) {
        ASSERT_EQ(atomic_load(&subs[i].done_calls), 1);
        ASSERT_EQ(subs[i].rc, OE_OK);
        ASSERT_EQ(subs[i].status, OE_STATUS_EXECUTED);
        ASSERT_EQ(strlen(subs[i].id), 36);
    }
    ASSERT_EQ(oe_store_count_executions(f.store), THREADS * PER_THREAD);
    ASSERT_EQ(atomic_load(&f.metrics.batch_items), THREADS * PER_THREAD);
    /* Requests that arrived together shared batches. */
    ASSERT_TRUE(atomic_load(&f.metrics.batch_count) < THREADS * PER_THREAD);
    /* After stop: refused, not restarted. */
    sub late = {0};
    ASSERT_EQ(decode(&late.job.item, "{\"action\":\"echo\",\"nonce\":\"late\"}", late.reason,
                     sizeof late.reason),
              OE_OK);
    late.job.done = on_done;
    late.job.ctx = &late;
    ASSERT_EQ(oe_executor_submit(f.x, &late.job), OE_EUNAVAIL);
    ASSERT_TRUE(oe_executor_start(f.x, err, sizeof err) != OE_OK);
    oe_request_clear(&late.job.item.req);
    ASSERT_EQ(atomic_load(&late.done_calls), 0);
    free(subs);
    close_fixture(&f);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    RUN_TEST(test_run_is_one_durable_batch);
    RUN_TEST(test_submit_group_commits);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return TEST_REPORT();
}
