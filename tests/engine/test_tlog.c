/* The writer's receipts log (engine/tlog.c) through the engine on a real
 * SQLite ledger: every entry's proof checks against its signed checkpoint,
 * the log continues after a restart, and a second writer with the same key
 * is refused instead of forking the log. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/digest.h"
#include "engine/engine.h"
#include "engine/json.h"
#include "engine/merkle.h"
#include "engine/note.h"
#include "engine/signer.h"
#include "engine/tlog.h"
#include "ledger/ledger.h"
#include "tests/test.h"

static char dir[64];

static const unsigned char seed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                       17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

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

static void close_fixture(fixture *f)
{
    oe_engine_free(f->engine);
    oe_tlog_free(f->tlog);
    oe_store_free(f->store);
}

/* Runs bodies[0..n) as one batch; outcomes into out (initialised here). */
static int run_batch(fixture *f, const char *const *bodies, size_t n, oe_outcome *out, char *err,
                     size_t errlen)
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
    }
    int rc = oe_engine_process(f->engine, ptrs, n, 2e9, err, errlen);
    for (size_t i = 0; i < n; i++) {
        out[i] = items[i].out;
        oe_request_clear(&items[i].req);
    }
    free(ptrs);
    free(items);
    return rc;
}

/* Checks o's proof as a verifier would, with pub as the one trusted key:
 * the checkpoint's signature, the leaf's hash on the inclusion path to the
 * checkpoint's root, and the leaf's fields against the outcome. Returns the
 * checkpoint's size (0 when anything failed). */
static uint64_t check_proof(const oe_outcome *o, const unsigned char pub[32], const char *status)
{
    char err[300];
    oe_json_doc *doc = test_json_parse(o->proof.data, o->proof.len, 0, err, sizeof err);
    if (!doc) {
        OE_FAIL_("proof is not JSON: %s", err);
        return 0;
    }
    uint64_t got = 0;
    const oe_json *p = oe_json_root(doc);
    const oe_json *cp = oe_json_get(p, "checkpoint"), *leaf = oe_json_get(p, "leaf"),
                  *idx = oe_json_get(p, "log_index"), *incl = oe_json_get(p, "inclusion"),
                  *origin = oe_json_get(p, "log_origin");
    if (!cp || !leaf || !idx || !incl || !origin || incl->type != OE_JSON_ARRAY) {
        OE_FAIL_("proof lacks a field: %s", o->proof.data);
        goto out;
    }
    size_t text_len = 0;
    const unsigned char(*trusted)[32] = (const unsigned char(*)[32])pub;
    if (oe_note_verify(cp->str, cp->len, trusted, 1, &text_len, err, sizeof err) != OE_OK) {
        OE_FAIL_("checkpoint: %s", err);
        goto out;
    }
    char org[200];
    uint64_t size;
    unsigned char root[32];
    if (oe_checkpoint_parse(cp->str, text_len, org, sizeof org, &size, root, err, sizeof err) !=
        OE_OK) {
        OE_FAIL_("checkpoint text: %.*s", (int)text_len, cp->str);
        goto out;
    }
    ASSERT_TRUE(strlen(org) == origin->len && memcmp(org, origin->str, origin->len) == 0);
    unsigned char path[OE_MERKLE_MAX_INCLUSION][32], lh[32];
    size_t n = incl->len;
    ASSERT_TRUE(n <= OE_MERKLE_MAX_INCLUSION);
    for (size_t i = 0; i < n && i < OE_MERKLE_MAX_INCLUSION; i++)
        ASSERT_EQ(oe_base64_decode(incl->items[i].str, incl->items[i].len, path[i], 32), 32);
    oe_merkle_leaf_hash(leaf->str, leaf->len, lh);
    ASSERT_EQ(oe_merkle_verify_inclusion(lh, (uint64_t)idx->i64, size,
                                         (const unsigned char(*)[32])path, n, root),
              OE_OK);
    ASSERT_EQ((uint64_t)idx->i64, o->log_index);
    /* The leaf's fields are the outcome's. */
    oe_json_doc *ld = test_json_parse(leaf->str, leaf->len, 0, err, sizeof err);
    if (!ld) {
        OE_FAIL_("leaf is not JSON: %s", err);
        goto out;
    }
    const oe_json *l = oe_json_root(ld);
    const oe_json *st = oe_json_get(l, "status"), *ten = oe_json_get(l, "tenant");
    ASSERT_TRUE(st && st->type == OE_JSON_STRING && strcmp(st->str, status) == 0);
    ASSERT_TRUE(ten && strcmp(ten->str, "t1") == 0);
    const oe_json *rh = oe_json_get(l, "request_hash");
    ASSERT_TRUE(rh && strcmp(rh->str, o->request_hash) == 0);
    if (o->status != OE_STATUS_REJECTED) {
        const oe_json *id = oe_json_get(l, "id"), *rc = oe_json_get(l, "receipt"),
                      *res = oe_json_get(l, "result");
        ASSERT_TRUE(id && id->type == OE_JSON_STRING && strcmp(id->str, o->id) == 0);
        ASSERT_TRUE(rc && rc->type == OE_JSON_STRING && strcmp(rc->str, o->receipt) == 0);
        ASSERT_TRUE(res && res->type == OE_JSON_STRING &&
                    strcmp(res->str, o->result_json.data) == 0);
    } else {
        const oe_json *d = oe_json_get(l, "detail");
        ASSERT_TRUE(d && d->type == OE_JSON_STRING && strcmp(d->str, o->detail) == 0);
    }
    /* The canonical text: dumping the parsed leaf gives its bytes again. */
    oe_buf again;
    oe_buf_init(&again, 0);
    ASSERT_EQ(oe_json_dump(&again, l, OE_JSON_COMPACT), OE_OK);
    ASSERT_TRUE(again.len == leaf->len && memcmp(again.data, leaf->str, leaf->len) == 0);
    oe_buf_free(&again);
    oe_json_doc_free(ld);
    got = size;
out:
    oe_json_doc_free(doc);
    return got;
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
        ASSERT_EQ(check_proof(&o1[i], pub, i == 2 ? "rejected" : "executed"), 4);
    }
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
    ASSERT_EQ(o2[0].proof.len, 0);
    ASSERT_EQ(o2[1].log_index, 4);
    ASSERT_EQ(check_proof(&o2[1], pub, "executed"), 6);
    ASSERT_EQ(o2[2].status, OE_STATUS_REJECTED); /* nonce conflict */
    ASSERT_EQ(o2[2].log_index, 5);
    ASSERT_EQ(check_proof(&o2[2], pub, "rejected"), 6);
    /* A key that is not trusted: the checkpoint does not verify. */
    unsigned char other[32];
    memcpy(other, pub, 32);
    other[0] ^= 1;
    size_t tl;
    ASSERT_TRUE(oe_note_verify(o2[1].proof.data, 0, (const unsigned char(*)[32])other, 1, &tl,
                               err, sizeof err) != OE_OK);
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
    const char *b3[] = {"{\"action\":\"add\",\"nonce\":\"n6\",\"payload\":{\"a\":0,\"b\":0}}"};
    oe_outcome o3[1];
    ASSERT_EQ(run_batch(&f, b3, 1, o3, err, sizeof err), OE_OK);
    ASSERT_EQ(o3[0].log_index, 6);
    ASSERT_EQ(check_proof(&o3[0], pub, "executed"), 7);
    oe_outcome_clear(&o3[0]);

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
    ASSERT_EQ(run_batch(&g, b5, 1, o5, err, sizeof err), OE_ESTORE);
    ASSERT_CONTAINS(err, "another process signs with this key");
    oe_outcome_clear(&o4[0]);
    oe_outcome_clear(&o5[0]);
    /* Nothing of the refused batch is recorded. */
    oe_execution ex;
    ASSERT_EQ(oe_store_find_by_nonce(f.store, "n8", oe_ledger_key_of("n8", 2), &ex, err,
                                     sizeof err),
              0);
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
    ASSERT_STREQ(b.data, "{\"action\":\"add\",\"approval_id\":null,\"approved\":true,\"detail\":null,"
                         "\"error_code\":null,\"id\":\"i\",\"log_index\":42,\"nonce\":\"n\\u00e9\","
                         "\"receipt\":\"r\",\"recorded_at\":\"2026-12-06T06:55:58.658123Z\","
                         "\"request_hash\":\"h\",\"result\":\"{\\\"sum\\\":3}\","
                         "\"status\":\"executed\",\"tenant\":\"\"}");
    /* Not UTF-8: refused, the buffer as it was. */
    oe_buf_reset(&b);
    e.nonce = "\xff";
    ASSERT_EQ(oe_tlog_leaf(&e, &b), OE_EINVAL);
    ASSERT_EQ(b.len, 0);
    oe_buf_free(&b);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/oe-tlog-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN_TEST(test_leaf_text);
    RUN_TEST(test_batches_prove_every_entry);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    TEST_REPORT();
}
