/* The audit of a ledger against its receipts logs (engine/audit.c) on a
 * real SQLite ledger written by the engine: an untouched ledger is
 * intact, and each way of tampering with it by hand (raw SQL on a copy)
 * is named: a row changed, removed, inserted (at a taken index, past the
 * log's end, with no log entry after the log began, naming a log without
 * checkpoints), reordered; a checkpoint's signature, leaf hashes, chain;
 * the log's tail cut off, caught against a checkpoint published before;
 * checkpoints signed by a key that is not trusted. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/audit.h"
#include "engine/engine.h"
#include "engine/note.h"
#include "engine/signer.h"
#include "engine/tlog.h"
#include "ledger/ledger.h"
#include "tests/test.h"

static char dir[64];
static char ledger[128]; /* the untouched ledger, written once */

static const unsigned char seed1[32] = {1, 2, 3};
static const unsigned char seed2[32] = {9, 8, 7};
static const unsigned char seed3[32] = {5, 5, 5};

/* Times the batches were recorded at: unsigned rows first, then the two
 * logs. */
#define T_UNSIGNED 1.5e9
#define T_SIGNED 2e9

/* Runs bodies[0..n) as one batch at now through an engine on store
 * (signing with tlog, or unsigned when it is NULL). */
static int run_batch(oe_store *store, oe_tlog *tlog, const char *const *bodies, size_t n,
                     double now)
{
    char err[300], reason[300];
    oe_engine_config cfg = {.tenant = "t1", .allowed_actions = "", .tlog = tlog};
    oe_engine *engine;
    if (oe_engine_new(&cfg, store, &engine, err, sizeof err) != 0) {
        OE_FAIL_("engine: %s", err);
        return -1;
    }
    oe_batch_item *items = calloc(n, sizeof *items);
    oe_batch_item **ptrs = calloc(n, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = &items[i];
        items[i].decode_error = (oe_error_code)test_request_from_json(
            bodies[i], strlen(bodies[i]), &items[i].req, reason, sizeof reason);
        items[i].decode_detail = "malformed";
        oe_outcome_init(&items[i].out);
    }
    int rc = oe_engine_process(engine, ptrs, n, now, NULL, err, sizeof err);
    if (rc != 0)
        OE_FAIL_("batch: %s", err);
    for (size_t i = 0; i < n; i++) {
        oe_outcome_clear(&items[i].out);
        oe_request_clear(&items[i].req);
    }
    free(ptrs);
    free(items);
    oe_engine_free(engine);
    return rc;
}

/* The ledger of every test: two unsigned executions (written before
 * signing was on), then log 1 (key 1): batches of 4, 3 and 2 entries
 * (executions and rejections: an unknown action, a malformed request, a
 * nonce conflict), then log 2 (key 2): one batch of 2. */
static int write_ledger(void)
{
    static const char *const unsigned_batch[] = {
        "{\"action\":\"add\",\"nonce\":\"u1\",\"payload\":{\"a\":1,\"b\":1}}",
        "{\"action\":\"echo\",\"nonce\":\"u2\",\"payload\":{}}"};
    static const char *const b1[] = {
        "{\"action\":\"add\",\"nonce\":\"a1\",\"payload\":{\"a\":1,\"b\":2}}",
        "{\"action\":\"echo\",\"nonce\":\"a2\",\"payload\":{\"s\":\"\\u00e9\"}}",
        "{\"action\":\"nope\",\"nonce\":\"a3\",\"payload\":{}}",
        "{\"action\":\"add\",\"nonce\":\"a4\",\"payload\":{\"a\":5,\"b\":6}}"};
    static const char *const b2[] = {
        "{\"action\":\"echo\",\"nonce\":\"a5\",\"payload\":{\"k\":[1,2]}}",
        "{\"action\":\"add\",\"payload\":{}}",
        "{\"action\":\"add\",\"nonce\":\"a1\",\"payload\":{\"a\":9,\"b\":9}}"};
    static const char *const b3[] = {
        "{\"action\":\"add\",\"nonce\":\"a6\",\"payload\":{\"a\":0,\"b\":0}}",
        "{\"action\":\"echo\",\"nonce\":\"a7\",\"payload\":{\"x\":null}}"};
    static const char *const b4[] = {
        "{\"action\":\"add\",\"nonce\":\"b1\",\"payload\":{\"a\":3,\"b\":3}}",
        "{\"action\":\"echo\",\"nonce\":\"b2\",\"payload\":{}}"};
    char err[300];
    oe_store *store;
    oe_signer *s1 = NULL, *s2 = NULL;
    oe_tlog *t1 = NULL, *t2 = NULL;
    int rc = -1;
    if (oe_sqlite_store_new(ledger, 0, OE_STORE_SYNC_NORMAL, &store, err, sizeof err) != 0) {
        OE_FAIL_("open: %s", err);
        return -1;
    }
    if (oe_signer_from_seed(seed1, &s1, err, sizeof err) != OE_OK ||
        oe_signer_from_seed(seed2, &s2, err, sizeof err) != OE_OK) {
        OE_FAIL_("signers: %s", err);
        goto out;
    }
    if (run_batch(store, NULL, unsigned_batch, 2, T_UNSIGNED) != 0)
        goto out;
    if (oe_tlog_open(store, s1, NULL, T_SIGNED, &t1, err, sizeof err) != OE_OK) {
        OE_FAIL_("log 1: %s", err);
        goto out;
    }
    if (run_batch(store, t1, b1, 4, T_SIGNED) != 0 || run_batch(store, t1, b2, 3, T_SIGNED + 1) ||
        run_batch(store, t1, b3, 2, T_SIGNED + 2))
        goto out;
    if (oe_tlog_open(store, s2, "example.com/log2", T_SIGNED, &t2, err, sizeof err) != OE_OK) {
        OE_FAIL_("log 2: %s", err);
        goto out;
    }
    rc = run_batch(store, t2, b4, 2, T_SIGNED + 3);
out:
    oe_tlog_free(t1);
    oe_tlog_free(t2);
    oe_signer_free(s1);
    oe_signer_free(s2);
    oe_store_free(store);
    return rc;
}

/* A copy of the untouched ledger named name (SQLite's backup API), in
 * path; then sql run on it (NULL: none). */
static int copy_ledger(const char *name, const char *sql, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.db", dir, name);
    unlink(path);
    sqlite3 *src = NULL, *dst = NULL;
    int rc = -1;
    if (sqlite3_open(ledger, &src) == SQLITE_OK && sqlite3_open(path, &dst) == SQLITE_OK) {
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (b && sqlite3_backup_step(b, -1) == SQLITE_DONE)
            rc = 0;
        sqlite3_backup_finish(b);
    }
    char *msg = NULL;
    if (rc == 0 && sql && sqlite3_exec(dst, sql, NULL, NULL, &msg) != SQLITE_OK) {
        OE_FAIL_("%s: %s", sql, msg ? msg : "?");
        rc = -1;
    }
    sqlite3_free(msg);
    sqlite3_close(src);
    sqlite3_close(dst);
    if (rc != 0)
        OE_FAIL_("copying the ledger to %s", path);
    return rc;
}

/* A text the query on the untouched ledger answers (one row, one column),
 * into out. */
static void query_text(const char *path, const char *sql, char *out, size_t len)
{
    sqlite3 *db;
    sqlite3_stmt *q = NULL;
    out[0] = '\0';
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(q, 0));
    else
        OE_FAIL_("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* Summary lines of the intact logs, collected. */
static int collect(void *ctx, const oe_audit_log *log)
{
    char *out = ctx;
    size_t n = strlen(out);
    snprintf(out + n, 1024 - n, "%s %llu %llu;", log->origin, (unsigned long long)log->entries,
             (unsigned long long)log->checkpoints);
    return 0;
}

/* Audits the ledger at path (two read-only stores on it; the checkpoints
 * from checkpoints_path when it is not NULL) into report; logs collects
 * the summaries (1024 bytes). Returns what oe_audit_ledger returns. */
static int audit_at(const char *path, const char *checkpoints_path, const oe_audit_options *opt,
                    oe_audit_report *report, char *logs)
{
    char err[512] = "";
    oe_store *a = NULL, *b = NULL;
    logs[0] = '\0';
    if (oe_sqlite_store_new(checkpoints_path ? checkpoints_path : path, 1, OE_STORE_SYNC_NORMAL, &a,
                            err, sizeof err) != 0 ||
        oe_sqlite_store_new(path, 1, OE_STORE_SYNC_NORMAL, &b, err, sizeof err) != 0) {
        OE_FAIL_("open %s: %s", path, err);
        oe_store_free(a);
        return -1;
    }
    oe_audit_options none = {0};
    int rc = oe_audit_ledger(a, b, opt ? opt : &none, collect, logs, report, err, sizeof err);
    if (rc != OE_OK)
        OE_FAIL_("audit of %s: %s", path, err);
    oe_store_free(a);
    oe_store_free(b);
    return rc;
}

/* Audits the copy name of the ledger, tampered with by sql: the first
 * problem must say want (each of its '|'-separated parts). */
static void expect_problem(const char *name, const char *sql, const oe_audit_options *opt,
                           const char *want)
{
    char path[160], logs[1024];
    if (copy_ledger(name, sql, path, sizeof path) != 0)
        return;
    oe_audit_report r;
    if (audit_at(path, NULL, opt, &r, logs) != OE_OK)
        return;
    if (r.intact) {
        OE_FAIL_("%s: found intact (%s), expected [%s]", name, logs, want);
        return;
    }
    char parts[512];
    snprintf(parts, sizeof parts, "%s", want);
    for (char *p = strtok(parts, "|"); p; p = strtok(NULL, "|"))
        ASSERT_CONTAINS(r.reason, p);
}

static char origin1[64]; /* log 1's origin, read from the ledger */

static void test_untouched_ledger_is_intact(void)
{
    oe_audit_report r;
    char logs[1024], want[256];
    ASSERT_EQ(audit_at(ledger, NULL, NULL, &r, logs), OE_OK);
    ASSERT_TRUE(r.intact);
    ASSERT_STREQ(r.reason, "");
    ASSERT_EQ(r.logs, 2);
    ASSERT_EQ(r.unsigned_rows, 2);
    snprintf(want, sizeof want, "%s 9 3;example.com/log2 2 1;", origin1);
    ASSERT_STREQ(logs, want);
    /* The summary callback may stop the audit; its return is returned. */
    char err[300];
    oe_store *a, *b;
    ASSERT_EQ(oe_sqlite_store_new(ledger, 1, OE_STORE_SYNC_NORMAL, &a, err, sizeof err), OE_OK);
    ASSERT_EQ(oe_sqlite_store_new(ledger, 1, OE_STORE_SYNC_NORMAL, &b, err, sizeof err), OE_OK);
    oe_audit_options none = {0};
    ASSERT_EQ(oe_audit_ledger(a, a, &none, NULL, NULL, &r, err, sizeof err), OE_EINVAL);
    ASSERT_EQ(oe_audit_ledger(a, b, &none, NULL, NULL, &r, err, sizeof err), OE_OK);
    ASSERT_TRUE(r.intact);
    oe_store_free(a);
    oe_store_free(b);
}

static void test_rows_changed(void)
{
    char want[300];
    snprintf(want, sizeof want,
             "execution nonce a2, entry 1 of log %s was changed after it was "
             "signed",
             origin1);
    expect_problem("changed",
                   "UPDATE executions SET result_json = '{\"echo\": {}}' WHERE nonce = 'a2'", NULL,
                   want);
    /* Any column of the leaf: the time, the tenant, the approval. */
    expect_problem("time",
                   "UPDATE executions SET created_at = created_at + 1e-6 WHERE nonce = 'a6'", NULL,
                   "execution nonce a6, entry 7 of log|was changed");
    expect_problem("tenant", "UPDATE executions SET tenant_id = 't2' WHERE nonce = 'b1'", NULL,
                   "execution nonce b1, entry 0 of log example.com/log2 was changed");
    /* A rejection: entry 2 (unknown action), entry 5 (no nonce). */
    expect_problem("detail", "UPDATE rejections SET detail = 'fine' WHERE nonce = 'a3'", NULL,
                   "rejection nonce a3, entry 2 of log|was changed after it was signed");
    expect_problem("no-nonce", "UPDATE rejections SET error_code = 'x' WHERE nonce IS NULL", NULL,
                   "rejection without a nonce, entry 5 of log|was changed");
    /* A NUL byte appended to a nonce: C reads the same text, the row is not
     * the same. */
    expect_problem("nul",
                   "UPDATE executions SET nonce = CAST(nonce || x'0078' AS TEXT)"
                   " WHERE nonce = 'a4'",
                   NULL, "entry 3 of log|was changed");
}

static void test_rows_removed(void)
{
    char want[300];
    snprintf(want, sizeof want, "entry 1 of log %s has no row: it was removed after it was signed",
             origin1);
    expect_problem("removed", "DELETE FROM executions WHERE nonce = 'a2'", NULL, want);
    expect_problem("removed-rej", "DELETE FROM rejections WHERE nonce = 'a1'", NULL,
                   "entry 6 of log|has no row");
    expect_problem("removed-last", "DELETE FROM executions WHERE nonce = 'a7'", NULL,
                   "entry 8 of log|has no row");
}

/* The columns of an execution, for copies of a row. */
#define EXEC_COLUMNS                                                                               \
    "id, request_hash, receipt, nonce, action, tenant_id, approval_id, result_json, approved,"     \
    " created_at, nonce_key, id_key, approval_key, payload, log_id, log_index, id_bucket"
#define COPY_OF(nonce, log_id, log_index, created_at, where)                                       \
    "INSERT INTO executions (" EXEC_COLUMNS ") SELECT id, request_hash, receipt, " nonce           \
    ", action, tenant_id, approval_id, result_json, approved, " created_at ", 42, id_key,"         \
    " approval_key, payload, " log_id ", " log_index ", id_bucket FROM executions WHERE " where

static void test_rows_inserted(void)
{
    char want[300];
    /* A copy of a row with a new nonce at its index. */
    snprintf(want, sizeof want,
             "execution nonce evil was inserted: a second row at entry 1 of "
             "log %s",
             origin1);
    expect_problem("dup", COPY_OF("'evil'", "log_id", "log_index", "created_at", "nonce = 'a2'"),
                   NULL, want);
    expect_problem("dup-last",
                   COPY_OF("'evil'", "log_id", "log_index", "created_at", "nonce = 'a7'"), NULL,
                   "execution nonce evil was inserted: a second row at entry 8");
    /* A rejection repeated exactly (rejections have no unique column). */
    expect_problem("dup-rej",
                   "INSERT INTO rejections (nonce, action, request_hash, error_code, detail,"
                   " created_at, payload, log_id, log_index, tenant_id) SELECT nonce, action,"
                   " request_hash, error_code, detail, created_at, payload, log_id, log_index,"
                   " tenant_id FROM rejections WHERE nonce = 'a3'",
                   NULL, "rejection nonce a3 was inserted: a second row at entry 2");
    /* No log entry, recorded after the log began: inserted; before it:
     * one more unsigned row. */
    expect_problem("late", COPY_OF("'late'", "NULL", "NULL", "created_at + 100", "nonce = 'a2'"),
                   NULL,
                   "execution nonce late was inserted: it is in no receipts log, but was "
                   "recorded at 2033-05-18T03:35:00|after log");
    char path[160], logs[1024];
    oe_audit_report r;
    if (copy_ledger("early", COPY_OF("'early'", "NULL", "NULL", "1e9", "nonce = 'a2'"), path,
                    sizeof path) == 0 &&
        audit_at(path, NULL, NULL, &r, logs) == OE_OK) {
        ASSERT_TRUE(r.intact);
        ASSERT_EQ(r.unsigned_rows, 3);
    }
    /* Past the log's last checkpoint; naming a log without checkpoints;
     * naming a log without an index. */
    expect_problem("past", COPY_OF("'past'", "log_id", "9", "created_at", "nonce = 'a2'"), NULL,
                   "execution nonce past was inserted: entry 9 of log|is past its last "
                   "checkpoint (size 9)");
    expect_problem("other-log", COPY_OF("'stray'", "77", "0", "created_at", "nonce = 'a2'"), NULL,
                   "execution nonce stray was inserted: it names log 77, which has no checkpoint");
    expect_problem("no-index", COPY_OF("'noindex'", "log_id", "NULL", "created_at", "nonce = 'a2'"),
                   NULL, "execution nonce noindex was inserted: it names log");
}

static void test_rows_reordered(void)
{
    /* Entries 0 and 3 of the first batch swap places; then an execution
     * and a rejection of the second batch (entries 4 and 5). */
    char want[300];
    snprintf(want, sizeof want,
             "execution nonce a4, entry 3 of log %s as signed, is at entry 0: "
             "rows were reordered",
             origin1);
    expect_problem("swap",
                   "UPDATE executions SET log_index = CASE nonce WHEN 'a1' THEN 3 ELSE 0 END"
                   " WHERE nonce IN ('a1', 'a4')",
                   NULL, want);
    expect_problem("swap-rej",
                   "UPDATE executions SET log_index = 5 WHERE nonce = 'a5';"
                   " UPDATE rejections SET log_index = 4 WHERE nonce IS NULL",
                   NULL, "rejection without a nonce, entry 5 of log|as signed, is at entry 4");
    /* Across batches: not a reordering within a batch, a changed row. */
    expect_problem("swap-far",
                   "UPDATE executions SET log_index = CASE nonce WHEN 'a2' THEN 7 ELSE 1 END"
                   " WHERE nonce IN ('a2', 'a6')",
                   NULL, "execution nonce a6, entry 1 of log|was changed after it was signed");
}

static void test_checkpoints_tampered(void)
{
    char want[300];
    /* A byte of the first checkpoint's signature (its last line: base64
     * of the key hash and the signature), as sqlite3 does it by hand. */
    snprintf(want, sizeof want, "log %s: the checkpoint of size 4 does not verify", origin1);
    expect_problem("signature",
                   "UPDATE checkpoints SET note = substr(note, 1, length(note) - 6) ||"
                   " CASE substr(note, length(note) - 5, 1) WHEN 'A' THEN 'B' ELSE 'A' END ||"
                   " substr(note, length(note) - 4) WHERE size = 4",
                   NULL, want);
    /* A stored leaf hash (entry 1's) changed: the tree of the batch no
     * longer leads to the signed root. */
    expect_problem("leaves",
                   "UPDATE checkpoints SET leaves = CAST(substr(leaves, 1, 32) || zeroblob(32) ||"
                   " substr(leaves, 65) AS BLOB) WHERE size = 4",
                   NULL,
                   "the leaf hashes stored with the checkpoint of size 4 do not lead to its "
                   "signed root");
    expect_problem("frontier", "UPDATE checkpoints SET frontier = zeroblob(64) WHERE size = 9",
                   NULL, "the tree stored with the checkpoint of size 9 is not the tree");
    expect_problem("root", "UPDATE checkpoints SET root = zeroblob(32) WHERE size = 7", NULL,
                   "the root stored with the checkpoint of size 7 is not the one its note signs");
    /* The chain: the first, or a middle checkpoint, removed (their rows
     * kept). */
    expect_problem("first", "DELETE FROM checkpoints WHERE size = 4", NULL,
                   "its first checkpoint starts at entry 4, not 0");
    expect_problem("middle", "DELETE FROM checkpoints WHERE size = 7", NULL,
                   "the checkpoint of size 9 starts at entry 7, but the one before it ends at 4");
    /* A checkpoint row with a blob cut short is a damaged ledger: a
     * failure of the store, not a verdict. */
    char path[160], logs[1024];
    oe_audit_report r;
    if (copy_ledger("cut-blob",
                    "UPDATE checkpoints SET leaves = substr(leaves, 1, 40) WHERE size = 4", path,
                    sizeof path) == 0) {
        oe_store *a, *b;
        char err[300];
        oe_audit_options none = {0};
        ASSERT_EQ(oe_sqlite_store_new(path, 1, OE_STORE_SYNC_NORMAL, &a, err, sizeof err), 0);
        ASSERT_EQ(oe_sqlite_store_new(path, 1, OE_STORE_SYNC_NORMAL, &b, err, sizeof err), 0);
        ASSERT_EQ(oe_audit_ledger(a, b, &none, collect, logs, &r, err, sizeof err), OE_ESTORE);
        ASSERT_CONTAINS(err, "damaged");
        oe_store_free(a);
        oe_store_free(b);
    }
}

static void test_tail_cut_off(void)
{
    /* The last batch of log 1 (entries 7 and 8) and its checkpoint
     * deleted: a shorter log, consistent on its own... */
    const char *cut = "DELETE FROM executions WHERE log_index >= 7 AND log_id = 1;"
                      " DELETE FROM rejections WHERE log_index >= 7 AND log_id = 1;"
                      " DELETE FROM checkpoints WHERE size = 9 AND log_id = 1";
    char path[160], logs[1024], want[300], note9[4096], note7[4096];
    oe_audit_report r;
    if (copy_ledger("cut", cut, path, sizeof path) != 0 ||
        audit_at(path, NULL, NULL, &r, logs) != OE_OK)
        return;
    ASSERT_TRUE(r.intact);
    snprintf(want, sizeof want, "%s 7 2;example.com/log2 2 1;", origin1);
    ASSERT_STREQ(logs, want);
    /* ... but not against a checkpoint published before: it had size 9. */
    query_text(ledger, "SELECT note FROM checkpoints WHERE size = 9 AND log_id = 1", note9,
               sizeof note9);
    query_text(ledger, "SELECT note FROM checkpoints WHERE size = 7 AND log_id = 1", note7,
               sizeof note7);
    const char *notes[] = {note7, note9};
    const char *names[] = {"seven.note", "nine.note"};
    oe_audit_options opt = {.notes = notes, .note_names = names, .nnotes = 2};
    snprintf(want, sizeof want,
             "log %s truncated or rewritten: the ledger's log has size 7, the checkpoint given "
             "(nine.note) has size 9",
             origin1);
    expect_problem("cut-given", cut, &opt, want);
    /* The untouched ledger holds both; the cut one the earlier one. */
    ASSERT_EQ(audit_at(ledger, NULL, &opt, &r, logs), OE_OK);
    ASSERT_TRUE(r.intact);
    opt.nnotes = 1;
    ASSERT_EQ(audit_at(path, NULL, &opt, &r, logs), OE_OK);
    ASSERT_TRUE(r.intact);
    /* The whole log gone, rows and checkpoints. */
    opt.notes = notes + 1;
    opt.note_names = names + 1;
    expect_problem("gone",
                   "DELETE FROM executions WHERE log_id = 1; DELETE FROM rejections WHERE"
                   " log_id = 1; DELETE FROM checkpoints WHERE log_id = 1",
                   &opt, "truncated or rewritten: the ledger has no checkpoint of it|nine.note");
    /* A checkpoint given whose signature does not verify. */
    char forged[4096];
    snprintf(forged, sizeof forged, "%s", note9);
    char *sig = strrchr(forged, ' ');
    if (sig && sig[1])
        sig[6] = sig[6] == 'A' ? 'B' : 'A';
    const char *bad[] = {forged};
    oe_audit_options forged_opt = {.notes = bad, .nnotes = 1};
    expect_problem("forged", NULL, &forged_opt, "the checkpoint given (#1) does not verify");
    /* A checkpoint of another root at a size the ledger holds: rewritten. */
    oe_signer *s1;
    char err[300];
    ASSERT_EQ(oe_signer_from_seed(seed1, &s1, err, sizeof err), OE_OK);
    oe_buf text, note;
    oe_buf_init(&text, 0);
    oe_buf_init(&note, 0);
    unsigned char root[32] = {7};
    ASSERT_EQ(oe_checkpoint_text(origin1, 7, root, &text), OE_OK);
    ASSERT_EQ(oe_note_sign(s1, origin1, text.data, text.len, &note, err, sizeof err), OE_OK);
    const char *other[] = {note.data};
    oe_audit_options other_opt = {.notes = other, .nnotes = 1};
    snprintf(want, sizeof want,
             "log %s rewritten: its checkpoint of size 7 has another root than the checkpoint "
             "given (#1)",
             origin1);
    expect_problem("rewritten", NULL, &other_opt, want);
    oe_buf_free(&text);
    oe_buf_free(&note);
    oe_signer_free(s1);
}

static void test_trusted_keys(void)
{
    char err[300];
    oe_signer *s[3];
    unsigned char keys[3][32];
    const unsigned char *seeds[] = {seed1, seed2, seed3};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(oe_signer_from_seed(seeds[i], &s[i], err, sizeof err), OE_OK);
        oe_signer_public(s[i], keys[i]);
    }
    oe_audit_report r;
    char logs[1024], want[300];
    oe_audit_options both = {.trusted = (const unsigned char(*)[32])keys, .ntrusted = 2};
    ASSERT_EQ(audit_at(ledger, NULL, &both, &r, logs), OE_OK);
    ASSERT_TRUE(r.intact);
    /* Log 2's key is not among them: the failure names the log. */
    oe_audit_options one = {.trusted = (const unsigned char(*)[32])keys, .ntrusted = 1};
    char key_id[65];
    oe_signer_key_id(s[1], key_id);
    snprintf(want, sizeof want,
             "log example.com/log2 is signed by key %s, which is not among the trusted keys",
             key_id);
    expect_problem("untrusted", NULL, &one, want);
    /* A log whose key in the ledger was replaced: its notes are checked
     * against the trusted keys, not against the ledger's word. */
    oe_audit_options third = {.trusted = (const unsigned char(*)[32])keys + 1, .ntrusted = 2};
    expect_problem("untrusted-1", NULL, &third, "is not among the trusted keys");
    char sql[300], hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", keys[2][i]);
    snprintf(sql, sizeof sql, "UPDATE logs SET public_key = x'%s' WHERE log_id = 1", hex);
    /* Without trusted keys the ledger's (replaced) key is used: nothing
     * it signed verifies. */
    expect_problem("key-replaced", sql, NULL, "the checkpoint of size 4 does not verify");
    oe_audit_options all = {.trusted = (const unsigned char(*)[32])keys, .ntrusted = 3};
    expect_problem("key-replaced-trusted", sql, &all, "the checkpoint of size 4 does not verify");
    for (int i = 0; i < 3; i++)
        oe_signer_free(s[i]);
}

/* The checkpoints read before a writer's next batch, the rows after it:
 * rows past the checkpoints read that a checkpoint covers by now are no
 * insertion (an audit beside a running worker). */
static void test_writer_ahead_of_checkpoints(void)
{
    char old[160], logs[1024], want[300];
    oe_audit_report r;
    if (copy_ledger("before-batch", "DELETE FROM checkpoints WHERE size = 9 AND log_id = 1", old,
                    sizeof old) != 0)
        return;
    ASSERT_EQ(audit_at(ledger, old, NULL, &r, logs), OE_OK);
    ASSERT_TRUE(r.intact);
    snprintf(want, sizeof want, "%s 7 2;example.com/log2 2 1;", origin1);
    ASSERT_STREQ(logs, want);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/oe-audit-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(ledger, sizeof ledger, "%s/ledger.db", dir);
    if (write_ledger() != 0) {
        oe_tests_failed++;
        return TEST_REPORT();
    }
    query_text(ledger, "SELECT origin FROM logs WHERE log_id = 1", origin1, sizeof origin1);
    RUN_TEST(test_untouched_ledger_is_intact);
    RUN_TEST(test_rows_changed);
    RUN_TEST(test_rows_removed);
    RUN_TEST(test_rows_inserted);
    RUN_TEST(test_rows_reordered);
    RUN_TEST(test_checkpoints_tampered);
    RUN_TEST(test_tail_cut_off);
    RUN_TEST(test_trusted_keys);
    RUN_TEST(test_writer_ahead_of_checkpoints);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return TEST_REPORT();
}
