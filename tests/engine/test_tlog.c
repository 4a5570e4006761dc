/* The writer's receipts log (engine/tlog.c) through the engine on a real
 * SQLite ledger: every entry's proof checks against its signed checkpoint,
 * the log continues after a restart, and a second writer with the same key
 * is refused instead of forking the log. */
#include <math.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/digest.h"
#include "engine/engine.h"
#include "engine/json.h"
#include "engine/merkle.h"
#include "engine/note.h"
#include "engine/proofs.h"
#include "engine/signer.h"
#include "engine/tlog.h"
#include "ledger/ledger.h"
#include "tests/test.h"

static char dir[64];

static const unsigned char seed[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                       12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                       23, 24, 25, 26, 27, 28, 29, 30, 31};

typedef struct {
    oe_store *store;
    oe_tlog *tlog;
    oe_engine *engine;
} fixture;

static int open_fixture(fixture *f, const char *path, const oe_signer *signer)
{
    char err[300];
    memset(f, 0, sizeof *f);
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &f->store, err, sizeof err) != 0 ||
        oe_tlog_open(f->store, signer, NULL, 1e9, &f->tlog, err, sizeof err) != OE_OK) {
        OE_FAIL_("open: %s", err);
        return -1;
    }
    oe_engine_config cfg = {.tenant = "t1", .allowed_actions = "", .tlog = f->tlog};
    if (oe_engine_new(&cfg, f->store, &f->engine, err, sizeof err) != 0) {
        OE_FAIL_("engine: %s", err);
        return -1;
    }
    return 0;
}

/* A fixture on the file name in dir, signing with the key of seed (its
 * public key into pub); the caller frees *signer after close_fixture.
 * Returns 0, or -1 after failing the test. */
static int open_signed(fixture *f, const char *name, oe_signer **signer, unsigned char pub[32])
{
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (oe_signer_from_seed(seed, signer, err, sizeof err) != OE_OK) {
        OE_FAIL_("signer: %s", err);
        return -1;
    }
    oe_signer_public(*signer, pub);
    return open_fixture(f, path, *signer);
}

static void close_fixture(fixture *f)
{
    oe_engine_free(f->engine);
    oe_tlog_free(f->tlog);
    oe_store_free(f->store);
}

/* What the complete hook saw of each item of a batch: how often it ran,
 * and a copy of the outcome's proof then; take is what it answers (1: it
 * took what it needs of the proof). */
typedef struct hook_log {
    oe_batch_item *items;
    atomic_int *calls;
    oe_buf *proofs;
    int take;
} hook_log;

static int copy_proof(void *ctx, oe_batch_item *it)
{
    hook_log *h = ctx;
    size_t i = (size_t)(it - h->items);
    atomic_fetch_add(&h->calls[i], 1);
    oe_buf_reset(&h->proofs[i]);
    oe_buf_append(&h->proofs[i], it->out.proof.data ? it->out.proof.data : "", it->out.proof.len);
    return h->take;
}

/* Runs bodies[0..n) as one batch; outcomes into out (initialised here);
 * the batch's signed checkpoint into checkpoint unless it is NULL; with
 * hook, each item's complete hook records into it (its calls and proofs
 * of n entries). */
static int run_batch_hooked(fixture *f, const char *const *bodies, size_t n, oe_outcome *out,
                            oe_buf *checkpoint, hook_log *hook, char *err, size_t errlen)
{
    oe_batch_item *items = calloc(n, sizeof *items);
    oe_batch_item **ptrs = calloc(n, sizeof *ptrs);
    char reason[300];
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = &items[i];
        items[i].decode_error = (oe_error_code)test_request_from_json(
            bodies[i], strlen(bodies[i]), &items[i].req, reason, sizeof reason);
        items[i].decode_detail = "malformed";
        oe_outcome_init(&items[i].out);
        if (hook) {
            hook->items = items;
            items[i].complete = copy_proof;
            items[i].complete_ctx = hook;
        }
    }
    int rc = oe_engine_process(f->engine, ptrs, n, 2e9, checkpoint, err, errlen);
    for (size_t i = 0; i < n; i++) {
        out[i] = items[i].out;
        oe_request_clear(&items[i].req);
    }
    free(ptrs);
    free(items);
    return rc;
}

static int run_batch_signed(fixture *f, const char *const *bodies, size_t n, oe_outcome *out,
                            oe_buf *checkpoint, char *err, size_t errlen)
{
    return run_batch_hooked(f, bodies, n, out, checkpoint, NULL, err, errlen);
}

static int run_batch(fixture *f, const char *const *bodies, size_t n, oe_outcome *out, char *err,
                     size_t errlen)
{
    return run_batch_signed(f, bodies, n, out, NULL, err, errlen);
}

/* The claim of o's receipt as the Kafka receipt shows it. */
static oe_tlog_claim claim_of(const oe_outcome *o, const char *nonce, const char *action)
{
    int rejected = o->status == OE_STATUS_REJECTED;
    return (oe_tlog_claim){
        .id = rejected ? NULL : o->id,
        .nonce = nonce,
        .action = action,
        .request_hash = o->request_hash,
        .status = oe_status_name(o->status),
        .result = rejected ? NULL : o->result_json.data,
        .receipt = rejected ? NULL : o->receipt,
        .error_code = oe_error_code_name(o->error),
        .detail = rejected ? o->detail : NULL,
        .approval_id = o->approval_id,
        .approved = o->approved,
    };
}

/* Checks o's receipt as a verifier would, with pub as the one trusted key
 * (oe_tlog_verify), and returns its checkpoint's size, read here on its
 * own (0 when anything failed). */
static uint64_t check_proof(const oe_outcome *o, const unsigned char pub[32], const char *nonce,
                            const char *action)
{
    char err[300];
    oe_tlog_claim c = claim_of(o, nonce, action);
    const unsigned char(*trusted)[32] = (const unsigned char(*)[32])pub;
    if (oe_tlog_verify(&c, o->proof.data, o->proof.len, trusted, 1, err, sizeof err) != OE_OK) {
        OE_FAIL_("proof of %s: %s", nonce, err);
        return 0;
    }
    oe_json_doc *doc = test_json_parse(o->proof.data, o->proof.len, 0, err, sizeof err);
    if (!doc) {
        OE_FAIL_("proof is not JSON: %s", err);
        return 0;
    }
    const oe_json *cp = oe_json_get(oe_json_root(doc), "checkpoint");
    const oe_json *leaf = oe_json_get(oe_json_root(doc), "leaf");
    char org[200];
    uint64_t size = 0;
    unsigned char root[32];
    /* The checkpoint's text is its lines up to the blank one. */
    const char *blank = cp ? strstr(cp->str, "\n\n") : NULL;
    if (!blank || oe_checkpoint_parse(cp->str, (size_t)(blank - cp->str) + 1, org, sizeof org,
                                      &size, root, err, sizeof err) != OE_OK)
        OE_FAIL_("checkpoint: %s", cp ? cp->str : "(none)");
    /* The leaf is canonical: its parse dumped again gives its bytes. */
    oe_json_doc *ld = leaf ? test_json_parse(leaf->str, leaf->len, 0, err, sizeof err) : NULL;
    oe_buf again;
    oe_buf_init(&again, 0);
    ASSERT_TRUE(ld && oe_json_dump(&again, oe_json_root(ld), OE_JSON_COMPACT) == OE_OK);
    ASSERT_TRUE(ld && again.len == leaf->len && memcmp(again.data, leaf->str, leaf->len) == 0);
    ASSERT_TRUE(ld && strcmp(oe_json_get(oe_json_root(ld), "tenant")->str, "t1") == 0);
    oe_buf_free(&again);
    oe_json_doc_free(ld);
    oe_json_doc_free(doc);
    return size;
}

/* A forged or altered receipt is refused, each with its reason. */
static void check_forgeries(const oe_outcome *o, const oe_outcome *other,
                            const unsigned char pub[32])
{
    char err[300];
    const unsigned char(*trusted)[32] = (const unsigned char(*)[32])pub;
    oe_tlog_claim c = claim_of(o, "n1", "add");
    oe_tlog_claim changed = c;
    changed.result = "{\"sum\": 4}";
    ASSERT_EQ(oe_tlog_verify(&changed, o->proof.data, o->proof.len, trusted, 1, err, sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "result is not the leaf's");
    changed = c;
    changed.status = "rejected";
    ASSERT_EQ(oe_tlog_verify(&changed, o->proof.data, o->proof.len, trusted, 1, err, sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "status rejected is not the leaf's");
    /* A built-in's receipt claiming that a Lua action's code ran. */
    changed = c;
    changed.action_code_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    ASSERT_EQ(oe_tlog_verify(&changed, o->proof.data, o->proof.len, trusted, 1, err, sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "action_code_hash is not the leaf's");
    /* Another entry's proof. */
    ASSERT_EQ(oe_tlog_verify(&c, other->proof.data, other->proof.len, trusted, 1, err, sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "not the leaf's");
    /* A key that is not trusted. */
    unsigned char wrong[32];
    memcpy(wrong, pub, 32);
    wrong[0] ^= 1;
    ASSERT_EQ(oe_tlog_verify(&c, o->proof.data, o->proof.len, (const unsigned char(*)[32])wrong, 1,
                             err, sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "checkpoint:");
    /* With a cache of verified checkpoints (the bridge's): the second
     * receipt of the batch is checked without its signature again, and
     * everything else still is. */
    oe_tlog_note_cache cache;
    memset(&cache, 0, sizeof cache);
    ASSERT_EQ(
        oe_tlog_verify_cached(&cache, &c, o->proof.data, o->proof.len, trusted, 1, err, sizeof err),
        OE_OK);
    ASSERT_EQ(cache.next, 1);
    ASSERT_EQ(
        oe_tlog_verify_cached(&cache, &c, o->proof.data, o->proof.len, trusted, 1, err, sizeof err),
        OE_OK);
    ASSERT_EQ(cache.next, 1); /* a hit: nothing verified again */
    changed = c;
    changed.result = "{\"sum\": 4}";
    ASSERT_EQ(oe_tlog_verify_cached(&cache, &changed, o->proof.data, o->proof.len, trusted, 1, err,
                                    sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "result is not the leaf's");
    /* The seed's hash alone. */
    ASSERT_EQ(oe_tlog_verify(&c, NULL, 0, trusted, 1, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no proof");
    /* An inclusion path taken from another leaf: the leaf is not on it. */
    oe_buf swapped;
    oe_buf_init(&swapped, 0);
    const char *a = strstr(o->proof.data, "\"inclusion\":");
    const char *a_end = strstr(o->proof.data, "],\"leaf\"");
    const char *b = strstr(other->proof.data, "\"inclusion\":");
    const char *b_end = strstr(other->proof.data, "],\"leaf\"");
    ASSERT_TRUE(a && a_end && b && b_end);
    if (a && a_end && b && b_end) {
        oe_buf_append(&swapped, o->proof.data, (size_t)(a - o->proof.data));
        oe_buf_append(&swapped, b, (size_t)(b_end - b));
        oe_buf_puts(&swapped, a_end);
        ASSERT_EQ(oe_tlog_verify(&c, swapped.data, swapped.len, trusted, 1, err, sizeof err),
                  OE_EINVAL);
        ASSERT_CONTAINS(err, "inclusion path does not lead to its root");
    }
    oe_buf_free(&swapped);
    /* The receipt as JSON, in its /execute shape (result as a value, no
     * nonce): valid; with a changed result: not. */
    oe_buf js;
    oe_buf_init(&js, 0);
    oe_buf_printf(&js,
                  "{\"id\": \"%s\", \"action\": \"add\", \"result\": %s, \"approved\": true, "
                  "\"receipt\": \"%s\", \"status\": \"replayed\", \"proof\": %s}",
                  o->id, o->result_json.data, o->receipt, o->proof.data);
    oe_json_doc *doc = test_json_parse(js.data, js.len, 0, err, sizeof err);
    ASSERT_EQ(oe_tlog_verify_json(oe_json_root(doc), trusted, 1, err, sizeof err), OE_OK);
    oe_json_doc_free(doc);
    oe_buf_reset(&js);
    oe_buf_printf(&js,
                  "{\"id\": \"%s\", \"action\": \"add\", \"result\": {\"sum\": 0}, "
                  "\"approved\": true, \"receipt\": \"%s\", \"status\": \"executed\", "
                  "\"proof\": %s}",
                  o->id, o->receipt, o->proof.data);
    doc = test_json_parse(js.data, js.len, 0, err, sizeof err);
    ASSERT_EQ(oe_tlog_verify_json(oe_json_root(doc), trusted, 1, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "result is not the leaf's");
    oe_json_doc_free(doc);
    /* result_json beside result: both claims of the one text. As on Kafka
     * (both the text) and in an /execute answer (result the value):
     * valid; a forged result beside the right result_json, or the other
     * way round: not. */
    for (int forged = 0; forged < 3; forged++) {
        oe_buf esc;
        oe_buf_init(&esc, 0);
        oe_json_dump_string(&esc, o->result_json.data, o->result_json.len);
        const char *right = esc.data;
        const char *as_text = forged == 1 ? "\"{\\\"sum\\\": 0}\"" : right;
        const char *as_json = forged == 2 ? "\"{\\\"sum\\\": 0}\"" : right;
        for (int value = 0; value < 2; value++) {
            oe_buf_reset(&js);
            oe_buf_printf(&js,
                          "{\"id\": \"%s\", \"action\": \"add\", \"result\": %s, "
                          "\"result_json\": %s, \"approved\": true, \"receipt\": \"%s\", "
                          "\"status\": \"replayed\", \"proof\": %s}",
                          o->id,
                          value ? (forged == 1 ? "{\"sum\": 0}" : o->result_json.data) : as_text,
                          as_json, o->receipt, o->proof.data);
            doc = test_json_parse(js.data, js.len, 0, err, sizeof err);
            ASSERT_EQ(oe_tlog_verify_json(oe_json_root(doc), trusted, 1, err, sizeof err),
                      forged ? OE_EINVAL : OE_OK);
            if (forged)
                ASSERT_TRUE(strstr(err, "result and result_json differ") ||
                            strstr(err, "result is not the leaf's"));
            oe_json_doc_free(doc);
        }
        oe_buf_free(&esc);
    }
    oe_buf_free(&js);
}

static void test_batches_prove_every_entry(void)
{
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/a.db", dir);
    oe_signer *signer;
    ASSERT_EQ(oe_signer_from_seed(seed, &signer, err, sizeof err), OE_OK);
    unsigned char pub[32];
    oe_signer_public(signer, pub);
    fixture f;
    if (open_fixture(&f, path, signer) != 0)
        return;
    /* Batch 1: three executions and a rejection (unknown action). */
    const char *b1[] = {
        "{\"action\":\"add\",\"nonce\":\"n1\",\"payload\":{\"a\":1,\"b\":2}}",
        "{\"action\":\"echo\",\"nonce\":\"n2\",\"payload\":{\"s\":\"\\u00e9\"}}",
        "{\"action\":\"nope\",\"nonce\":\"n3\",\"payload\":{}}",
        "{\"action\":\"add\",\"nonce\":\"n4\",\"payload\":{\"a\":5,\"b\":6}}",
    };
    oe_outcome o1[4];
    ASSERT_EQ(run_batch(&f, b1, 4, o1, err, sizeof err), OE_OK);
    for (size_t i = 0; i < 4; i++) {
        ASSERT_TRUE(o1[i].logged);
        ASSERT_EQ(o1[i].log_index, i);
        char nonce[8];
        snprintf(nonce, sizeof nonce, "n%zu", i + 1);
        ASSERT_EQ(check_proof(&o1[i], pub, nonce, i == 2 ? "nope" : i == 1 ? "echo" : "add"), 4);
    }
    check_forgeries(&o1[0], &o1[3], pub);
    /* Batch 2: a replay (no entry of its own yet) and two new entries. */
    const char *b2[] = {
        "{\"action\":\"add\",\"nonce\":\"n1\",\"payload\":{\"a\":1,\"b\":2}}",
        "{\"action\":\"add\",\"nonce\":\"n5\",\"payload\":{\"a\":7,\"b\":8}}",
        "{\"action\":\"add\",\"nonce\":\"n1\",\"payload\":{\"a\":9,\"b\":9}}",
    };
    oe_outcome o2[3];
    ASSERT_EQ(run_batch(&f, b2, 3, o2, err, sizeof err), OE_OK);
    ASSERT_EQ(o2[0].status, OE_STATUS_REPLAYED);
    ASSERT_EQ(o2[0].logged, 0);
    /* The replay carries the original's proof, in batch 1's checkpoint. */
    ASSERT_EQ(check_proof(&o2[0], pub, "n1", "add"), 4);
    ASSERT_TRUE(strstr(o2[0].proof.data, "\"log_index\":0,") != NULL);
    ASSERT_EQ(o2[1].log_index, 4);
    ASSERT_EQ(check_proof(&o2[1], pub, "n5", "add"), 6);
    ASSERT_EQ(o2[2].status, OE_STATUS_REJECTED); /* nonce conflict */
    ASSERT_EQ(o2[2].log_index, 5);
    ASSERT_EQ(check_proof(&o2[2], pub, "n1", "add"), 6);
    ASSERT_EQ(oe_tlog_size(f.tlog), 6);
    for (size_t i = 0; i < 4; i++)
        oe_outcome_clear(&o1[i]);
    for (size_t i = 0; i < 3; i++)
        oe_outcome_clear(&o2[i]);
    close_fixture(&f);

    /* After a restart the log goes on from its last checkpoint. */
    if (open_fixture(&f, path, signer) != 0)
        return;
    ASSERT_EQ(oe_tlog_size(f.tlog), 6);
    /* The same request twice in one batch: the second is a replay of an
     * entry of this very batch, proved by its checkpoint. */
    const char *b3[] = {"{\"action\":\"add\",\"nonce\":\"n6\",\"payload\":{\"a\":0,\"b\":0}}",
                        "{\"action\":\"add\",\"nonce\":\"n6\",\"payload\":{\"a\":0,\"b\":0}}"};
    oe_outcome o3[2];
    ASSERT_EQ(run_batch(&f, b3, 2, o3, err, sizeof err), OE_OK);
    ASSERT_EQ(o3[0].log_index, 6);
    ASSERT_EQ(check_proof(&o3[0], pub, "n6", "add"), 7);
    ASSERT_EQ(o3[1].status, OE_STATUS_REPLAYED);
    ASSERT_EQ(check_proof(&o3[1], pub, "n6", "add"), 7);
    ASSERT_TRUE(o3[1].proof.len == o3[0].proof.len &&
                memcmp(o3[1].proof.data, o3[0].proof.data, o3[0].proof.len) == 0);
    oe_outcome_clear(&o3[0]);
    oe_outcome_clear(&o3[1]);

    /* A second writer with the same key on the same ledger, opened at the
     * same size: whichever commits second is refused, and fails closed. */
    fixture g;
    if (open_fixture(&g, path, signer) != 0) {
        close_fixture(&f);
        return;
    }
    const char *b4[] = {"{\"action\":\"add\",\"nonce\":\"n7\",\"payload\":{\"a\":0,\"b\":1}}"};
    const char *b5[] = {"{\"action\":\"add\",\"nonce\":\"n8\",\"payload\":{\"a\":0,\"b\":2}}"};
    oe_outcome o4[1], o5[1];
    ASSERT_EQ(run_batch(&f, b4, 1, o4, err, sizeof err), OE_OK);
    err[0] = '\0';
    ASSERT_EQ(run_batch(&g, b5, 1, o5, err, sizeof err), OE_EDUP_LOG);
    ASSERT_CONTAINS(err, "another process signs with this key");
    /* And every later batch of that writer, at once: the log is not its. */
    char why[300];
    ASSERT_EQ(oe_engine_log_taken(g.engine, why, sizeof why), 1);
    ASSERT_CONTAINS(why, "another process signs with this key");
    oe_outcome_clear(&o5[0]);
    err[0] = '\0';
    ASSERT_EQ(run_batch(&g, b5, 1, o5, err, sizeof err), OE_EDUP_LOG);
    ASSERT_CONTAINS(err, "another process signs with this key");
    ASSERT_EQ(oe_engine_log_taken(f.engine, why, sizeof why), 0);
    oe_outcome_clear(&o4[0]);
    oe_outcome_clear(&o5[0]);
    /* Nothing of the refused batch is recorded. */
    oe_execution ex;
    ASSERT_EQ(
        oe_store_find_by_nonce(f.store, "n8", oe_ledger_key_of("n8", 2), &ex, err, sizeof err), 0);
    close_fixture(&g);
    close_fixture(&f);

    /* The origin is the key's: another key cannot take it over. */
    oe_signer *other_signer;
    unsigned char seed2[32] = {9};
    ASSERT_EQ(oe_signer_from_seed(seed2, &other_signer, err, sizeof err), OE_OK);
    oe_store *s;
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    oe_tlog *t = NULL;
    char id[65];
    oe_signer_key_id(signer, id);
    char origin[64];
    snprintf(origin, sizeof origin, "openexec/%.16s", id);
    ASSERT_EQ(oe_tlog_open(s, other_signer, origin, 1e9, &t, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "belongs to another key");
    ASSERT_EQ(oe_tlog_open(s, other_signer, "bad origin", 1e9, &t, err, sizeof err), OE_EINVAL);
    ASSERT_TRUE(t == NULL);
    oe_store_free(s);
    oe_signer_free(other_signer);
    oe_signer_free(signer);
}

/* A row changed after it was signed: its replay fails closed (no receipt
 * that the log contradicts), naming the row. */
static void test_changed_row_fails_replay(void)
{
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/b.db", dir);
    oe_signer *signer;
    ASSERT_EQ(oe_signer_from_seed(seed, &signer, err, sizeof err), OE_OK);
    fixture f;
    if (open_fixture(&f, path, signer) != 0)
        return;
    const char *b1[] = {"{\"action\":\"add\",\"nonce\":\"t1\",\"payload\":{\"a\":1,\"b\":2}}"};
    oe_outcome o[1];
    ASSERT_EQ(run_batch(&f, b1, 1, o, err, sizeof err), OE_OK);
    oe_outcome_clear(&o[0]);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db, "UPDATE executions SET result_json = '{\"sum\": 4}'", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    err[0] = '\0';
    ASSERT_EQ(run_batch(&f, b1, 1, o, err, sizeof err), OE_ESTORE);
    ASSERT_CONTAINS(err, "the row was changed");
    oe_outcome_clear(&o[0]);
    close_fixture(&f);
    oe_signer_free(signer);
}

/* Proofs made later from the ledger alone (engine/proofs.c): every entry
 * in every later tree of its log, and every pair of checkpoints
 * consistent; what is not a checkpoint's size, or a changed row, is
 * refused. */
static void test_proofs_from_the_ledger(void)
{
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/c.db", dir);
    oe_signer *signer;
    ASSERT_EQ(oe_signer_from_seed(seed, &signer, err, sizeof err), OE_OK);
    unsigned char pub[32];
    oe_signer_public(signer, pub);
    const unsigned char(*trusted)[32] = (const unsigned char(*)[32])pub;
    fixture f;
    if (open_fixture(&f, path, signer) != 0)
        return;
    /* Batches of 1, 2, 3, 5 and 8 executions: checkpoints 1, 3, 6, 11, 19. */
    static const size_t sizes[] = {1, 2, 3, 5, 8};
    const uint64_t cps[] = {1, 3, 6, 11, 19};
    int k = 0;
    for (size_t b = 0; b < 5; b++) {
        char bodies[8][128];
        const char *ptrs[8];
        for (size_t i = 0; i < sizes[b]; i++, k++) {
            snprintf(bodies[i], sizeof bodies[i],
                     "{\"action\":\"add\",\"nonce\":\"p%d\",\"payload\":{\"a\":%d,\"b\":1}}", k, k);
            ptrs[i] = bodies[i];
        }
        oe_outcome o[8];
        ASSERT_EQ(run_batch(&f, ptrs, sizes[b], o, err, sizeof err), OE_OK);
        for (size_t i = 0; i < sizes[b]; i++)
            oe_outcome_clear(&o[i]);
    }
    char origin[64], id[65];
    oe_signer_key_id(signer, id);
    snprintf(origin, sizeof origin, "openexec/%.16s", id);
    oe_buf out;
    oe_buf_init(&out, 0);
    for (int e = 0; e < 19; e++) {
        char nonce[16];
        snprintf(nonce, sizeof nonce, "p%d", e);
        oe_execution rec;
        ASSERT_EQ(oe_store_find_by_nonce(f.store, nonce, oe_ledger_key_of(nonce, strlen(nonce)),
                                         &rec, err, sizeof err),
                  1);
        oe_tlog_claim c = {.id = rec.id,
                           .nonce = rec.nonce,
                           .action = rec.action,
                           .request_hash = rec.request_hash,
                           .status = "executed",
                           .result = rec.result_json,
                           .receipt = rec.receipt,
                           .approval_id = NULL,
                           .approved = 1};
        for (size_t j = 0; j < 5; j++) {
            oe_buf_reset(&out);
            oe_rc rc = oe_proof_in_tree(f.store, &rec, cps[j], &out, err, sizeof err);
            if ((uint64_t)e >= cps[j]) {
                ASSERT_EQ(rc, OE_EINVAL);
                continue;
            }
            ASSERT_EQ(rc, OE_OK);
            if (rc != OE_OK)
                continue;
            ASSERT_EQ(oe_tlog_verify(&c, out.data, out.len, trusted, 1, err, sizeof err), OE_OK);
            char want[32];
            snprintf(want, sizeof want, "\\n%llu\\n", (unsigned long long)cps[j]);
            ASSERT_TRUE(strstr(out.data, want) != NULL);
        }
        /* Not a checkpoint's size. */
        oe_buf_reset(&out);
        ASSERT_EQ(oe_proof_in_tree(f.store, &rec, 18, &out, err, sizeof err), OE_EINVAL);
        ASSERT_CONTAINS(err, e < 18 ? "no checkpoint of size 18" : "is not in a tree of size 18");
        oe_execution_clear(&rec);
    }
    /* Consistency of every pair of checkpoints, checked against the roots
     * of their signed notes. */
    for (size_t a = 0; a < 5; a++) {
        for (size_t b = a; b < 5; b++) {
            oe_buf_reset(&out);
            ASSERT_EQ(oe_proof_consistency(f.store, origin, cps[a], cps[b], &out, err, sizeof err),
                      OE_OK);
            oe_json_doc *doc = test_json_parse(out.data, out.len, 0, err, sizeof err);
            if (!doc) {
                OE_FAIL_("consistency is not JSON: %s", err);
                continue;
            }
            const oe_json *r = oe_json_root(doc);
            const oe_json *notes[2] = {oe_json_get(oe_json_get(r, "from"), "checkpoint"),
                                       oe_json_get(oe_json_get(r, "to"), "checkpoint")};
            unsigned char roots[2][32];
            for (int x = 0; x < 2; x++) {
                size_t tl = 0;
                char org[128];
                uint64_t size;
                ASSERT_EQ(
                    oe_note_verify(notes[x]->str, notes[x]->len, trusted, 1, &tl, err, sizeof err),
                    OE_OK);
                ASSERT_EQ(oe_checkpoint_parse(notes[x]->str, tl, org, sizeof org, &size, roots[x],
                                              err, sizeof err),
                          OE_OK);
                ASSERT_EQ(size, x ? cps[b] : cps[a]);
            }
            const oe_json *cons = oe_json_get(r, "consistency");
            unsigned char proof[OE_MERKLE_MAX_CONSISTENCY][32];
            for (uint32_t i = 0; i < cons->len; i++)
                ASSERT_EQ(oe_base64_decode(cons->items[i].str, cons->items[i].len, proof[i], 32),
                          32);
            ASSERT_EQ(oe_merkle_verify_consistency(cps[a], cps[b], roots[0], roots[1],
                                                   (const unsigned char(*)[32])proof, cons->len),
                      OE_OK);
            if (cons->len > 0) { /* one hash changed: refused */
                proof[0][0] ^= 1;
                ASSERT_EQ(oe_merkle_verify_consistency(cps[a], cps[b], roots[0], roots[1],
                                                       (const unsigned char(*)[32])proof,
                                                       cons->len),
                          OE_EINVAL);
            }
            oe_json_doc_free(doc);
        }
    }
    oe_buf_reset(&out);
    ASSERT_EQ(oe_proof_consistency(f.store, origin, 3, 5, &out, err, sizeof err), OE_EINVAL);
    ASSERT_EQ(oe_proof_consistency(f.store, origin, 0, 3, &out, err, sizeof err), OE_EINVAL);
    ASSERT_EQ(oe_proof_consistency(f.store, "openexec/nobody", 1, 3, &out, err, sizeof err),
              OE_EINVAL);
    /* A row changed after it was signed: no proof of it. */
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE executions SET result_json = '{}' WHERE nonce = 'p4'", NULL,
                           NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    oe_execution rec;
    ASSERT_EQ(
        oe_store_find_by_nonce(f.store, "p4", oe_ledger_key_of("p4", 2), &rec, err, sizeof err), 1);
    oe_buf_reset(&out);
    ASSERT_EQ(oe_proof_in_tree(f.store, &rec, 19, &out, err, sizeof err), OE_ESTORE);
    ASSERT_CONTAINS(err, "the row was changed");
    oe_execution_clear(&rec);
    oe_buf_free(&out);
    close_fixture(&f);
    oe_signer_free(signer);
}

/* The leaf's bytes, exactly: keys sorted, canonical strings, the time in
 * RFC 3339 with microseconds. */
static void test_leaf_text(void)
{
    oe_tlog_entry e = {.id = "i",
                       .nonce = "n\xc3\xa9",
                       .action = "add",
                       .request_hash = "h",
                       .approved = 1,
                       .result = "{\"sum\":3}",
                       .receipt = "r",
                       .tenant = "",
                       .recorded_at = 1796540158.658123,
                       .log_index = 42};
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_tlog_leaf(&e, &b), OE_OK);
    ASSERT_STREQ(b.data,
                 "{\"action\":\"add\",\"approval_id\":null,\"approved\":true,\"detail\":null,"
                 "\"error_code\":null,\"id\":\"i\",\"log_index\":42,\"nonce\":\"n\\u00e9\","
                 "\"receipt\":\"r\",\"recorded_at\":\"2026-12-06T06:55:58.658123Z\","
                 "\"request_hash\":\"h\",\"result\":\"{\\\"sum\\\":3}\","
                 "\"status\":\"executed\",\"tenant\":\"\"}");
    /* A Lua action's entry has its code hash, in its sorted place. */
    oe_buf_reset(&b);
    e.action_code_hash = "c0de";
    ASSERT_EQ(oe_tlog_leaf(&e, &b), OE_OK);
    ASSERT_TRUE(
        strncmp(b.data, "{\"action\":\"add\",\"action_code_hash\":\"c0de\",\"approval_id\"",
                strlen("{\"action\":\"add\",\"action_code_hash\":\"c0de\",\"approval_id\"")) == 0);
    e.action_code_hash = NULL;
    /* The date by arithmetic, as the C library's gmtime gives it: days
     * around the epoch, leap days, century years, the last second of 9999,
     * and times a few hundred years apart across the whole range. */
    const double times[] = {0,
                            -1,
                            -86400.5,
                            951782400,
                            951868799.999999,
                            4107542400,
                            4107456000,
                            -2208988800,
                            253402300799.999999,
                            -62135596800,
                            1796540158.000001};
    for (size_t k = 0; k < sizeof times / sizeof times[0] + 2000; k++) {
        double t = k < sizeof times / sizeof times[0]
                       ? times[k]
                       : -62135596800.0 + (double)(k * 157766400ULL % 315537897600ULL) +
                             (double)(k % 86400) + 0.25;
        long long us = llround(t * 1e6);
        long long sec = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
        time_t tt = (time_t)sec;
        struct tm tm;
        char want[64], got[64];
        ASSERT_TRUE(gmtime_r(&tt, &tm) != NULL);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us - sec * 1000000);
        oe_buf_reset(&b);
        e.recorded_at = t;
        ASSERT_EQ(oe_tlog_leaf(&e, &b), OE_OK);
        const char *at = strstr(b.data, "\"recorded_at\":\"");
        ASSERT_TRUE(at != NULL);
        at += strlen("\"recorded_at\":\"");
        snprintf(got, sizeof got, "%.*s", (int)(strchr(at, '"') - at), at);
        if (strcmp(got, want) != 0)
            OE_FAIL_("time %.6f: %s, not %s", t, got, want);
    }
    /* A time no clock gives (a changed row's, as ledger audit rebuilds
     * its leaf): written as the number it is, never as a date, and without
     * overflowing the microseconds (the sanitizer build checks that). */
    const struct {
        double t;
        const char *text;
    } odd[] = {{NAN, "nan"},
               {INFINITY, "inf"},
               {-INFINITY, "-inf"},
               {1e300, "1.0000000000000001e+300"},
               {-1e300, "-1.0000000000000001e+300"},
               {9.3e12, "9300000000000"},
               {-9.3e12, "-9300000000000"}};
    for (size_t k = 0; k < sizeof odd / sizeof odd[0]; k++) {
        char want[100];
        snprintf(want, sizeof want, "\"recorded_at\":\"%s\"", odd[k].text);
        oe_buf_reset(&b);
        e.recorded_at = odd[k].t;
        ASSERT_EQ(oe_tlog_leaf(&e, &b), OE_OK);
        if (!strstr(b.data, want))
            OE_FAIL_("time %g: %s has no %s", odd[k].t, b.data, want);
    }
    /* Not UTF-8: refused, the buffer as it was. */
    oe_buf_reset(&b);
    e.nonce = "\xff";
    ASSERT_EQ(oe_tlog_leaf(&e, &b), OE_EINVAL);
    ASSERT_EQ(b.len, 0);
    oe_buf_free(&b);
}

/* The size of the checkpoint a batch hands back (oe_engine_process's
 * checkpoint): signed by pub, of the log's origin; 0 when none or bad. */
static uint64_t checkpoint_size(const oe_buf *cp, const unsigned char pub[32], const char *origin)
{
    char err[300], o[OE_TLOG_ORIGIN_MAX + 1];
    size_t text_len;
    uint64_t size = 0;
    unsigned char root[32];
    const unsigned char(*trusted)[32] = (const unsigned char(*)[32])pub;
    if (cp->len == 0 ||
        oe_note_verify(cp->data, cp->len, trusted, 1, &text_len, err, sizeof err) != OE_OK ||
        oe_checkpoint_parse(cp->data, text_len, o, sizeof o, &size, root, err, sizeof err) !=
            OE_OK ||
        strcmp(o, origin) != 0)
        return 0;
    return size;
}

/* Each batch that records entries hands back its signed checkpoint (what
 * the worker publishes), the one its receipts carry; a batch of replays
 * alone signs none and hands back nothing. */
static void test_checkpoint_of_each_batch(void)
{
    char err[300];
    oe_signer *signer;
    unsigned char pub[32];
    fixture f;
    if (open_signed(&f, "cp.db", &signer, pub) != 0)
        return;
    const char *origin = oe_tlog_origin(f.tlog);
    oe_buf cp;
    oe_buf_init(&cp, 0);
    const char *b1[] = {
        "{\"action\":\"add\",\"nonce\":\"c1\",\"payload\":{\"a\":1,\"b\":2}}",
        "{\"action\":\"nope\",\"nonce\":\"c2\",\"payload\":{}}",
        "{\"action\":\"echo\",\"nonce\":\"c3\",\"payload\":{}}",
    };
    oe_outcome o[3];
    ASSERT_EQ(run_batch_signed(&f, b1, 3, o, &cp, err, sizeof err), OE_OK);
    ASSERT_EQ(checkpoint_size(&cp, pub, origin), 3);
    /* The very note every receipt of the batch carries. */
    oe_buf lit;
    oe_buf_init(&lit, 0);
    ASSERT_EQ(oe_json_dump_string(&lit, cp.data, cp.len), OE_OK);
    for (size_t i = 0; i < 3; i++) {
        ASSERT_TRUE(o[i].proof.len > 0 && strstr(o[i].proof.data, lit.data) != NULL);
        oe_outcome_clear(&o[i]);
    }
    /* Replays only (a rejection is recorded again: not here): no
     * checkpoint, and the buffer says so. */
    const char *b2[] = {b1[2], b1[0]};
    ASSERT_EQ(run_batch_signed(&f, b2, 2, o, &cp, err, sizeof err), OE_OK);
    ASSERT_EQ(cp.len, 0);
    ASSERT_EQ(o[0].status, OE_STATUS_REPLAYED);
    ASSERT_EQ(o[1].status, OE_STATUS_REPLAYED);
    ASSERT_EQ(oe_tlog_size(f.tlog), 3);
    for (size_t i = 0; i < 2; i++)
        oe_outcome_clear(&o[i]);
    /* A new entry among replays: the grown tree's. */
    const char *b3[] = {
        "{\"action\":\"add\",\"nonce\":\"c1\",\"payload\":{\"a\":1,\"b\":2}}",
        "{\"action\":\"add\",\"nonce\":\"c4\",\"payload\":{\"a\":3,\"b\":4}}",
    };
    ASSERT_EQ(run_batch_signed(&f, b3, 2, o, &cp, err, sizeof err), OE_OK);
    ASSERT_EQ(checkpoint_size(&cp, pub, origin), 4);
    size_t len;
    const char *last = oe_tlog_note(f.tlog, &len);
    ASSERT_TRUE(last && len == cp.len && memcmp(last, cp.data, len) == 0);
    for (size_t i = 0; i < 2; i++)
        oe_outcome_clear(&o[i]);
    oe_buf_free(&lit);
    oe_buf_free(&cp);
    close_fixture(&f);
    oe_signer_free(signer);
}

/* A batch large enough for the engine's threads to make its leaves in
 * parallel: executions and rejections interleaved, every proof valid
 * against the batch's checkpoint, every leaf at its row's index. */
/* A batch large enough for the helpers. With take, each hook says it took
 * the proof: the proof it saw is the entry's, and out keeps none of the
 * proofs the batch made, but keeps a replay's (read from the ledger). */
static void large_batch(int take)
{
    char err[300];
    oe_signer *signer;
    unsigned char pub[32];
    fixture f;
    if (open_signed(&f, take ? "large-taken.db" : "large.db", &signer, pub) != 0)
        return;
    ASSERT_TRUE(oe_engine_start(f.engine) >= 0); /* its helper threads */
    enum { N = 300 };
    static char text[N][160];
    static char nonces[N][32];
    const char *bodies[N];
    for (int i = 0; i < N; i++) {
        snprintf(nonces[i], sizeof nonces[i], "big-%d", i);
        snprintf(text[i], sizeof text[i],
                 "{\"action\":\"%s\",\"nonce\":\"%s\",\"payload\":{\"a\":%d,\"b\":1}}",
                 i % 7 == 3 ? "nope" : "add", nonces[i], i);
        bodies[i] = text[i];
    }
    static oe_outcome o[N];
    oe_buf cp;
    oe_buf_init(&cp, 0);
    /* The complete hook of each item runs once, on whichever thread, and
     * sees the proof the outcome ends with. */
    static atomic_int calls[N];
    static oe_buf proofs[N];
    hook_log hook = {.calls = calls, .proofs = proofs, .take = take};
    for (int i = 0; i < N; i++) {
        atomic_init(&calls[i], 0);
        oe_buf_init(&proofs[i], 0);
    }
    ASSERT_EQ(run_batch_hooked(&f, bodies, N, o, &cp, &hook, err, sizeof err), OE_OK);
    ASSERT_EQ(checkpoint_size(&cp, pub, oe_tlog_origin(f.tlog)), N);
    int bad = 0, hooked = 0;
    for (int i = 0; i < N; i++) {
        ASSERT_TRUE(o[i].logged);
        if (atomic_load(&calls[i]) == 1 && proofs[i].len > 0 &&
            (take ? o[i].proof.len == 0
                  : proofs[i].len == o[i].proof.len &&
                        memcmp(proofs[i].data, o[i].proof.data, o[i].proof.len) == 0))
            hooked++;
        /* The proof checked is the one the hook saw. */
        oe_buf kept = o[i].proof;
        o[i].proof = proofs[i];
        if (o[i].log_index != (uint64_t)i ||
            check_proof(&o[i], pub, nonces[i], i % 7 == 3 ? "nope" : "add") != N)
            bad++;
        o[i].proof = kept;
        oe_buf_free(&proofs[i]);
        oe_outcome_clear(&o[i]);
    }
    ASSERT_EQ(bad, 0);
    ASSERT_EQ(hooked, N);
    if (take) {
        /* A replay's proof comes from the ledger, not from the batch's
         * log: out keeps it, whatever the hook answers. */
        oe_outcome r[1];
        atomic_init(&calls[0], 0);
        oe_buf_init(&proofs[0], 0);
        ASSERT_EQ(run_batch_hooked(&f, bodies, 1, r, NULL, &hook, err, sizeof err), OE_OK);
        ASSERT_EQ(r[0].status, OE_STATUS_REPLAYED);
        ASSERT_EQ(atomic_load(&calls[0]), 1);
        ASSERT_TRUE(r[0].proof.len > 0 && proofs[0].len == r[0].proof.len &&
                    memcmp(proofs[0].data, r[0].proof.data, r[0].proof.len) == 0);
        ASSERT_EQ(check_proof(&r[0], pub, nonces[0], "add"), N);
        oe_buf_free(&proofs[0]);
        oe_outcome_clear(&r[0]);
    }
    oe_buf_free(&cp);
    close_fixture(&f);
    oe_signer_free(signer);
}

static void test_large_batch_leaves(void)
{
    large_batch(0);
}

static void test_large_batch_proofs_taken(void)
{
    large_batch(1);
}

/* One item's outcome reused for a second batch, as the worker's slots
 * are: a large result's buffers are sized for its text (not for the most
 * any text of its length could take escaped), and are not kept for the
 * next request in that place; oe_outcome_shed frees them outright. */
static void test_large_results_not_kept(void)
{
    fixture f;
    oe_signer *signer = NULL;
    unsigned char pub[32];
    if (open_signed(&f, "shed.db", &signer, pub) != 0)
        return;
    enum { VALUES = 6000 }; /* a result of 18 KB: "0, " each */
    oe_buf big;
    oe_buf_init(&big, 0);
    oe_buf_puts(&big, "{\"action\":\"echo\",\"nonce\":\"big\",\"payload\":{\"a\":[0");
    for (int i = 1; i < VALUES; i++)
        oe_buf_puts(&big, ",0");
    oe_buf_puts(&big, "]}}");
    const char *bodies[2] = {big.data,
                             "{\"action\":\"add\",\"nonce\":\"small\",\"payload\":{\"a\":1}}"};
    oe_batch_item items[2];
    oe_batch_item *ptrs[2] = {&items[0], &items[1]};
    memset(items, 0, sizeof items);
    char err[300], reason[300];
    for (int i = 0; i < 2; i++)
        oe_outcome_init(&items[i].out);
    /* The big request in both places. */
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(test_request_from_json(bodies[0], strlen(bodies[0]), &items[i].req, reason,
                                         sizeof reason),
                  OE_OK);
    ASSERT_EQ(oe_engine_process(f.engine, ptrs, 2, 2e9, NULL, err, sizeof err), OE_OK);
    const oe_outcome *o = &items[0].out;
    ASSERT_TRUE(o->status == OE_STATUS_EXECUTED && items[1].out.status == OE_STATUS_REPLAYED);
    ASSERT_TRUE(o->result_json.len > 3 * (VALUES - 1) && o->leaf.len > o->result_json.len &&
                o->proof.len > o->leaf.len);
    /* Sized for their text: a power of two at most twice it (room for
     * six bytes a byte would ask for eight times it or more). */
    ASSERT_TRUE(o->leaf.cap <= 2 * o->leaf.len + 64);
    ASSERT_TRUE(o->proof.cap <= 2 * o->proof.len + 64);
    ASSERT_EQ(check_proof(o, pub, "big", "echo"), 1);
    for (int i = 0; i < 2; i++)
        oe_request_clear(&items[i].req);
    /* Shed outright (the worker, once a batch is published). */
    oe_outcome_shed(&items[1].out);
    ASSERT_TRUE(items[1].out.result_json.cap == 0 && items[1].out.proof.cap == 0);
    /* A small request in the first place: the large buffers are gone. */
    ASSERT_EQ(
        test_request_from_json(bodies[1], strlen(bodies[1]), &items[0].req, reason, sizeof reason),
        OE_OK);
    ASSERT_EQ(oe_engine_process(f.engine, ptrs, 1, 2e9, NULL, err, sizeof err), OE_OK);
    ASSERT_EQ(o->status, OE_STATUS_EXECUTED);
    ASSERT_TRUE(o->result_json.cap <= 4096 && o->leaf.cap <= 4096 && o->proof.cap <= 4096);
    ASSERT_EQ(check_proof(o, pub, "small", "add"), 2);
    oe_request_clear(&items[0].req);
    for (int i = 0; i < 2; i++)
        oe_outcome_clear(&items[i].out);
    oe_buf_free(&big);
    close_fixture(&f);
    oe_signer_free(signer);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/oe-tlog-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN_TEST(test_leaf_text);
    RUN_TEST(test_batches_prove_every_entry);
    RUN_TEST(test_changed_row_fails_replay);
    RUN_TEST(test_proofs_from_the_ledger);
    RUN_TEST(test_checkpoint_of_each_batch);
    RUN_TEST(test_large_batch_leaves);
    RUN_TEST(test_large_batch_proofs_taken);
    RUN_TEST(test_large_results_not_kept);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return TEST_REPORT();
}
