/* Tests ledger/ledger.c (which URL names which backend, and passwords
 * masked in messages), the SQLite backend's schema steps, and the payloads
 * rows keep (OPENEXEC_LEDGER_PAYLOADS) through the engine. */
#include "engine/digest.h"
#include "engine/engine.h"
#include "ledger/ledger.h"
#include "tests/test.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_url_kinds(void)
{
    char err[256];
    const char *path = NULL;
    ASSERT_EQ(oe_ledger_parse_url("sqlite:///rel.db", &path, err, sizeof err), OE_LEDGER_SQLITE);
    ASSERT_STREQ(path, "rel.db");
    ASSERT_EQ(oe_ledger_parse_url("sqlite:////abs/x.db", &path, err, sizeof err), OE_LEDGER_SQLITE);
    ASSERT_STREQ(path, "/abs/x.db");
    ASSERT_EQ(oe_ledger_parse_url("postgresql://u:p@h:5432/d", &path, err, sizeof err),
              OE_LEDGER_POSTGRESQL);
    ASSERT_EQ(oe_ledger_parse_url("postgres://h/d", &path, err, sizeof err), OE_LEDGER_POSTGRESQL);
    ASSERT_EQ(oe_ledger_parse_url("sqlite:///", &path, err, sizeof err), OE_LEDGER_INVALID);
    ASSERT_EQ(oe_ledger_parse_url("sqlite://rel.db", &path, err, sizeof err), OE_LEDGER_INVALID);
    ASSERT_EQ(oe_ledger_parse_url("mysql://u:hunter2@h/d", &path, err, sizeof err),
              OE_LEDGER_INVALID);
    /* The reason names the accepted forms and never the password. */
    ASSERT_CONTAINS(err, "postgresql://");
    ASSERT_TRUE(strstr(err, "hunter2") == NULL);
}

/* The display form of ledger URLs: parsed as libpq parses them, secrets
 * replaced by ***, whatever their spelling. */
static void test_mask(void)
{
    static const struct {
        const char *url, *shown;
    } cases[] = {
        {"postgresql://user:secret@db:5432/x?sslmode=require",
         "postgresql://user:***@db:5432/x?sslmode=require"},
        {"postgres://u:secret@h/d", "postgres://u:***@h/d"},
        /* libpq ends the user info at the first '@': "p" is the password
         * and "ss@h" the host. */
        {"postgres://u:p@ss@h/d", "postgres://u:***@ss%40h/d"},
        /* '#' and '?' are part of a password for libpq (its URI parser
         * stops the user info only at '@' or '/'). */
        {"postgresql://u:Pa#ss?wd@h/db", "postgresql://u:***@h/db"},
        {"postgresql://u:Pa%23ss%3Fwd@h:5433/db", "postgresql://u:***@h:5433/db"},
        /* A password in the query string, by name or %-encoded name. */
        {"postgresql://h/d?user=u&password=pw&sslmode=disable",
         "postgresql://u:***@h/d?sslmode=disable"},
        {"postgresql://h/d?password=pw", "postgresql://h/d?password=***"},
        {"postgresql://u@h/d?pass%77ord=p%77", "postgresql://u:***@h/d"},
        {"postgresql://u:pw@h/d?sslpassword=k", "postgresql://u:***@h/d?sslpassword=***"},
        /* No password: nothing to hide. */
        {"postgresql://u@h/d", "postgresql://u@h/d"},
        {"postgresql://h", "postgresql://h"},
        /* IPv6, several hosts, a socket directory. */
        {"postgresql://u:pw@[::1]:5432/d", "postgresql://u:***@[::1]:5432/d"},
        {"postgresql://u:pw@h1:5432,h2:5433/d",
         "postgresql://u:***@/d?host=h1%2Ch2&port=5432%2C5433"},
        {"postgresql://%2Ftmp/d", "postgresql://%2Ftmp/d"},
        /* key=value strings. */
        {"host=h port=5 dbname=x user=u password=secret", "postgresql://u:***@h:5/x"},
        {"host=h password='a b'", "postgresql://h?password=***"},
        /* A database name that is itself a connection string. */
        {"dbname='postgresql://u:hidden@h/d'", "postgresql:///***"},
        /* Unparsable: libpq's reason may quote the password, so nothing is
         * shown. */
        {"postgresql://u:pw%zz@h/d", "***"},
        {"mysql://u:hunter2@h/d", "***"},
        {"host=h password='unterminated", "***"},
        /* SQLite file names are shown as they are. */
        {"sqlite:///rel.db", "sqlite:///rel.db"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        oe_ledger_mask_url(cases[i].url, out, sizeof out);
        ASSERT_STREQ(out, cases[i].shown);
    }
    /* A short buffer stays terminated. */
    oe_ledger_mask_url("postgresql://user:secret@db/x", out, 12);
    ASSERT_EQ(strlen(out), 11);
    oe_ledger_mask_url("postgresql://user:secret@db/x", out, 1);
    ASSERT_EQ(strlen(out), 0);
}

/* Removes a SQLite ledger file and its WAL and shared-memory files. */
static void remove_ledger(const char *path)
{
    char side[160];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static int user_version(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    int v = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW)
            v = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return v;
}

/* SQL that takes a new file back to version 5: the trigger of versions 3
 * to 5 instead of the unique indexes of version 6. */
/* Version 7 taken back: no receipts logs. */
#define UNDO_V8                                                                                    \
    "ALTER TABLE executions DROP COLUMN action_code_hash;"                                         \
    "ALTER TABLE rejections DROP COLUMN action_code_hash;"                                         \
    "DELETE FROM schema_migrations WHERE version = 8;"

#define UNDO_V7                                                                                    \
    "DROP TABLE checkpoints;"                                                                      \
    "DROP TABLE logs;"                                                                             \
    "ALTER TABLE executions DROP COLUMN log_index;"                                                \
    "ALTER TABLE executions DROP COLUMN log_id;"                                                   \
    "ALTER TABLE rejections DROP COLUMN log_index;"                                                \
    "ALTER TABLE rejections DROP COLUMN log_id;"                                                   \
    "ALTER TABLE rejections DROP COLUMN tenant_id;"                                                \
    "DELETE FROM schema_migrations WHERE version = 7;"

#define UNDO_V6                                                                                    \
    "DROP INDEX executions_nonce;"                                                                 \
    "DROP INDEX executions_approval;"                                                              \
    "CREATE INDEX executions_nonce_key ON executions(nonce_key);"                                  \
    "CREATE INDEX executions_approval_key ON executions(approval_key)"                             \
    "  WHERE approval_key IS NOT NULL;"                                                            \
    "CREATE TRIGGER executions_unique BEFORE INSERT ON executions BEGIN"                           \
    "  SELECT RAISE(ABORT, 'UNIQUE constraint failed: executions.nonce')"                          \
    "    WHERE EXISTS (SELECT 1 FROM executions"                                                   \
    "                  WHERE nonce_key = NEW.nonce_key AND nonce = NEW.nonce);"                    \
    "  SELECT RAISE(ABORT, 'UNIQUE constraint failed: executions.approval_id')"                    \
    "    WHERE NEW.approval_id IS NOT NULL AND EXISTS (SELECT 1 FROM executions"                   \
    "                  WHERE approval_key = NEW.approval_key AND approval_id = NEW.approval_id);"  \
    "END;"                                                                                         \
    "DELETE FROM schema_migrations WHERE version = 6;"

/* A new file gets every step; a reader refuses an older schema; a newer
 * one is refused by both. */
static void test_sqlite_schema_versions(void)
{
    char dir[] = "/tmp/oe-ledger-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/l.db", dir);
    oe_store *s = NULL;
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    ASSERT_STREQ(oe_store_backend(s), "sqlite");
    ASSERT_EQ(oe_store_shared(s), 0);
    oe_store_free(s);
    ASSERT_EQ(user_version(path), OE_SQLITE_SCHEMA_VERSION);

    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s = NULL;
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), OE_ESTORE);
    ASSERT_CONTAINS(err, "newer than this binary");
    ASSERT_EQ(oe_sqlite_store_new(path, 1, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), OE_ESTORE);
    ASSERT_TRUE(s == NULL);
    int was = -1, now = -1;
    ASSERT_EQ(oe_sqlite_migrate(path, &was, &now, err, sizeof err), OE_ESTORE);
    ASSERT_EQ(was, 99);
    ASSERT_CONTAINS(err, "newer than this binary");

    /* An empty file opened read-only first: refused, not created. */
    char empty[128];
    snprintf(empty, sizeof empty, "%s/e.db", dir);
    FILE *f = fopen(empty, "w");
    ASSERT_TRUE(f != NULL);
    if (f)
        fclose(f);
    ASSERT_EQ(oe_sqlite_store_new(empty, 1, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "start a writer first");
    unlink(empty);
    remove_ledger(path);
    rmdir(dir);
}

/* Schema version 3: rows are found by their nonce and id keys, and the
 * file itself refuses a second row for a nonce. */
static void test_sqlite_keys(void)
{
    char dir[] = "/tmp/oe-ledger-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/k.db", dir);
    oe_store *s = NULL;
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    if (!s)
        return;
    char result[201];
    memset(result, 'x', 200);
    result[0] = '"';
    result[199] = '"';
    result[200] = '\0';
    ASSERT_EQ(oe_store_begin(s, err, sizeof err), 0);
    for (int i = 0; i < 300; i++) {
        char nonce[32];
        snprintf(nonce, sizeof nonce, "key-%d", i);
        oe_execution e = {.nonce = nonce,
                          .action = "echo",
                          .tenant_id = "t",
                          .result_json = result,
                          .approved = 1,
                          .created_at = 1.0};
        snprintf(e.id, sizeof e.id, "00000000-0000-4000-8000-%012d", i);
        memset(e.request_hash, 'a', 64);
        memset(e.receipt, 'b', 64);
        oe_execution_set_keys(&e);
        ASSERT_EQ(oe_store_insert_execution(s, &e, err, sizeof err), 0);
    }
    ASSERT_EQ(oe_store_commit(s, err, sizeof err), 0);
    oe_execution found;
    ASSERT_EQ(oe_store_find_by_nonce(s, "key-299", oe_ledger_key_of("key-299", strlen("key-299")),
                                     &found, err, sizeof err),
              1);
    ASSERT_STREQ(found.id, "00000000-0000-4000-8000-000000000299");
    oe_execution_clear(&found);
    ASSERT_EQ(
        oe_store_find_by_id(s, "00000000-0000-4000-8000-000000000007", &found, err, sizeof err), 1);
    ASSERT_STREQ(found.nonce, "key-7");
    oe_execution_clear(&found);
    ASSERT_EQ(oe_store_find_by_nonce(s, "key-300", oe_ledger_key_of("key-300", strlen("key-300")),
                                     &found, err, sizeof err),
              0);
    /* The same nonce again: refused by the file itself. */
    oe_execution dup = {.nonce = "key-3",
                        .action = "echo",
                        .tenant_id = "t",
                        .result_json = "1",
                        .approved = 1,
                        .created_at = 2.0};
    snprintf(dup.id, sizeof dup.id, "%s", "00000000-0000-4000-8000-999999999999");
    memset(dup.request_hash, 'c', 64);
    memset(dup.receipt, 'd', 64);
    ASSERT_EQ(oe_store_begin(s, err, sizeof err), 0);
    oe_execution_set_keys(&dup);
    ASSERT_EQ(oe_store_insert_execution(s, &dup, err, sizeof err), OE_EDUP_NONCE);
    oe_store_rollback(s);
    oe_store_free(s);
    remove_ledger(path);
    rmdir(dir);
}

/* Runs one JSON body through the engine; returns the outcome's status. */
static int run_body(oe_engine *engine, const char *body)
{
    oe_outcome o;
    oe_outcome_init(&o);
    test_run_body(engine, body, 5.0, &o);
    int status = (int)o.status;
    oe_outcome_clear(&o);
    return status;
}

typedef struct rejections {
    int n;
    char *payload[8]; /* owned; NULL when none was kept */
    char codes[8][32];
} rejections;

static int collect_rejection(void *ctx, const oe_rejection *r)
{
    rejections *c = ctx;
    if (c->n < 8) {
        c->payload[c->n] = r->payload ? strdup(r->payload) : NULL;
        snprintf(c->codes[c->n], sizeof c->codes[c->n], "%s", r->error_code);
    }
    c->n++;
    return 0;
}

/* Checks a cut payload: the first bytes of canon, then ...sha256= and the
 * hash of the whole, max bytes long. */
static void assert_cut(const char *got, const char *canon, size_t max, const char *whole)
{
    ASSERT_TRUE(got != NULL);
    if (!got)
        return;
    size_t n = strlen(got);
    ASSERT_EQ(n, max);
    ASSERT_TRUE(memcmp(got, canon, n - 74) == 0);
    ASSERT_TRUE(memcmp(got + n - 74, "...sha256=", 10) == 0);
    ASSERT_STREQ(got + n - 64, whole);
}

/* The payloads rows keep: canonical JSON (the text the request hash
 * covers) on executions and on rejections of requests read whole; none for
 * a request that could not be read or a rejection whose action was cut;
 * past OE_LEDGER_PAYLOAD_MAX_BYTES (executions) or
 * OE_LEDGER_REJECTED_PAYLOAD_MAX_BYTES (rejections) a cut carrying the hash
 * of the whole; with payload_hash_only none at all. */
static void test_payloads_kept(void)
{
    char dir[] = "/tmp/oe-ledger-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    /* A payload of 100,000 emoji: a 400 kB body, 1.2 MB canonical (each one
     * escaped as \ud83d\ude00). add ignores it and executes; an unknown
     * action is rejected. */
    enum { N = 100000 };
    static const char emoji[] = "\xf0\x9f\x98\x80", escaped[] = "\\ud83d\\ude00";
    size_t body_len = 64 + N * 4, canon_len = 16 + N * 12;
    char *big = malloc(body_len), *canon = malloc(canon_len), *big_rejected = malloc(body_len);
    ASSERT_TRUE(big && canon && big_rejected);
    if (!big || !canon || !big_rejected)
        return;
    char *b = big + sprintf(big, "{\"action\":\"add\",\"nonce\":\"p-4\",\"payload\":{\"s\":\"");
    char *c = canon + sprintf(canon, "{\"s\":\"");
    for (int i = 0; i < N; i++) {
        memcpy(b, emoji, 4);
        b += 4;
        memcpy(c, escaped, 12);
        c += 12;
    }
    strcpy(b, "\"}}");
    strcpy(c, "\"}");
    canon_len = strlen(canon);
    ASSERT_TRUE(canon_len > OE_LEDGER_PAYLOAD_MAX_BYTES);
    char whole[65];
    oe_sha256_hex(canon, canon_len, whole);
    strcpy(big_rejected, big);
    memcpy(big_rejected + strlen("{\"action\":\""), "nop", 3); /* "nop": unknown */
    memcpy(big_rejected + strlen("{\"action\":\"nop\",\"nonce\":\"p-"), "5", 1);
    char long_action[400];
    snprintf(long_action, sizeof long_action,
             "{\"action\":\"%0300d\",\"nonce\":\"p-6\",\"payload\":{\"y\":1}}", 7);

    for (int hash_only = 0; hash_only <= 1; hash_only++) {
        char path[128], err[512];
        snprintf(path, sizeof path, "%s/p%d.db", dir, hash_only);
        oe_store *s = NULL;
        oe_engine *e = NULL;
        oe_engine_config cfg = {
            .tenant = "", .allowed_actions = "", .payload_hash_only = hash_only};
        ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
        ASSERT_EQ(oe_engine_new(&cfg, s, &e, err, sizeof err), 0);
        if (!s || !e)
            return;
        ASSERT_EQ(run_body(e, "{\"action\":\"echo\",\"nonce\":\"p-1\","
                              "\"payload\":{\"b\":1,\"a\":\"\xc3\xa9\",\"c\":[1.5,null]}}"),
                  OE_STATUS_EXECUTED);
        ASSERT_EQ(run_body(e, "{\"action\":\"nope\",\"nonce\":\"p-2\",\"payload\":{\"x\":[1,2]}}"),
                  OE_STATUS_REJECTED);
        ASSERT_EQ(run_body(e, "{\"action\":\"echo\",\"payload\":{\"z\":1}}"), OE_STATUS_REJECTED);
        ASSERT_EQ(run_body(e, big), OE_STATUS_EXECUTED);
        ASSERT_EQ(run_body(e, big_rejected), OE_STATUS_REJECTED);
        ASSERT_EQ(run_body(e, long_action), OE_STATUS_REJECTED);
        oe_execution found;
        ASSERT_EQ(oe_store_find_by_nonce(s, "p-1", oe_ledger_key_of("p-1", strlen("p-1")), &found,
                                         err, sizeof err),
                  1);
        if (hash_only)
            ASSERT_TRUE(found.payload == NULL);
        else
            ASSERT_STREQ(found.payload, "{\"a\":\"\\u00e9\",\"b\":1,\"c\":[1.5,null]}");
        oe_execution_clear(&found);
        ASSERT_EQ(oe_store_find_by_nonce(s, "p-4", oe_ledger_key_of("p-4", strlen("p-4")), &found,
                                         err, sizeof err),
                  1);
        if (hash_only)
            ASSERT_TRUE(found.payload == NULL);
        else
            assert_cut(found.payload, canon, OE_LEDGER_PAYLOAD_MAX_BYTES, whole);
        oe_execution_clear(&found);
        rejections r = {0};
        ASSERT_EQ(oe_store_each_rejection(s, NULL, collect_rejection, &r, err, sizeof err), 0);
        ASSERT_EQ(r.n, 4);
        ASSERT_STREQ(r.codes[0], "unknown_action");
        ASSERT_STREQ(r.codes[1], "malformed");
        ASSERT_STREQ(r.codes[2], "unknown_action");
        ASSERT_STREQ(r.codes[3], "unknown_action");
        ASSERT_TRUE(r.payload[1] == NULL); /* not read whole: none */
        ASSERT_TRUE(r.payload[3] == NULL); /* action cut: the row could not be checked */
        if (hash_only) {
            ASSERT_TRUE(r.payload[0] == NULL && r.payload[2] == NULL);
        } else {
            ASSERT_STREQ(r.payload[0], "{\"x\":[1,2]}");
            assert_cut(r.payload[2], canon, OE_LEDGER_REJECTED_PAYLOAD_MAX_BYTES, whole);
        }
        for (int i = 0; i < 4; i++)
            free(r.payload[i]);
        oe_engine_free(e);
        oe_store_free(s);
        remove_ledger(path);
    }
    free(big);
    free(big_rejected);
    free(canon);
    rmdir(dir);
}

/* oe_sqlite_migrate: a file of version 3 (the layout before payloads) gets
 * the payload column and keeps its rows, which read back with none. */
static void test_sqlite_migrate_keeps_rows(void)
{
    char dir[] = "/tmp/oe-ledger-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/m.db", dir);
    int was = -1, now = -1;
    ASSERT_EQ(oe_sqlite_migrate(path, &was, &now, err, sizeof err), 0);
    ASSERT_EQ(was, 0);
    ASSERT_EQ(now, OE_SQLITE_SCHEMA_VERSION);
    /* Back to version 3 by hand: a row as version 3 wrote it. */
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           UNDO_V8 UNDO_V7 UNDO_V6
                           "DROP TRIGGER executions_unique;"
                           "DROP INDEX executions_id_bucket_key;"
                           "ALTER TABLE executions DROP COLUMN id_bucket;"
                           "CREATE INDEX executions_id_key ON executions(id_key);"
                           "ALTER TABLE executions DROP COLUMN payload;"
                           "ALTER TABLE rejections DROP COLUMN payload;"
                           "DELETE FROM schema_migrations WHERE version >= 4;"
                           "PRAGMA user_version = 3;"
                           "INSERT INTO rejections (nonce, action, request_hash, error_code,"
                           " detail, created_at) VALUES ('old-r', 'echo', NULL, 'malformed',"
                           " 'x', 1.0);",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    ASSERT_EQ(user_version(path), 3);
    ASSERT_EQ(oe_sqlite_migrate(path, &was, &now, err, sizeof err), 0);
    ASSERT_EQ(was, 3);
    ASSERT_EQ(now, OE_SQLITE_SCHEMA_VERSION);
    oe_store *s = NULL;
    ASSERT_EQ(oe_sqlite_store_new(path, 1, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    if (s) {
        rejections r = {0};
        ASSERT_EQ(oe_store_each_rejection(s, NULL, collect_rejection, &r, err, sizeof err), 0);
        ASSERT_EQ(r.n, 1);
        ASSERT_TRUE(r.payload[0] == NULL);
        free(r.payload[0]);
        oe_store_free(s);
    }
    /* Again: nothing to do. */
    ASSERT_EQ(oe_sqlite_migrate(path, &was, &now, err, sizeof err), 0);
    ASSERT_EQ(was, OE_SQLITE_SCHEMA_VERSION);
    remove_ledger(path);
    rmdir(dir);
}

/* A ledger of version 4 (ids indexed by key alone, nonce and approval id
 * kept unique by a trigger), made by hand from a new file: a writer
 * upgrades it to the current version; its rows are found by nonce and by
 * id (no bucket), a new row gets a bucket, the trigger is gone, and the
 * file still refuses a second row for an old nonce or an old approval id
 * (version 6's unique indexes). */
static void test_sqlite_v4_upgraded(void)
{
    char dir[] = "/tmp/oe-ledger-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/v4.db", dir);
    oe_store *s = NULL;
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    if (!s)
        return;
    oe_execution e = {.nonce = "old-1",
                      .action = "echo",
                      .tenant_id = "t",
                      .approval_id = "approval-1",
                      .result_json = "1",
                      .approved = 1,
                      .created_at = 1.0};
    snprintf(e.id, sizeof e.id, "%s", "00000000-0000-4000-8000-000000000001");
    memset(e.request_hash, 'a', 64);
    memset(e.receipt, 'b', 64);
    ASSERT_EQ(oe_store_begin(s, err, sizeof err), 0);
    oe_execution_set_keys(&e);
    ASSERT_EQ(oe_store_insert_execution(s, &e, err, sizeof err), 0);
    ASSERT_EQ(oe_store_commit(s, err, sizeof err), 0);
    oe_store_free(s);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           UNDO_V8 UNDO_V7 UNDO_V6
                           "DROP INDEX executions_id_bucket_key;"
                           "ALTER TABLE executions DROP COLUMN id_bucket;"
                           "CREATE INDEX executions_id_key ON executions(id_key);"
                           "DELETE FROM schema_migrations WHERE version = 5;"
                           "PRAGMA user_version = 4;",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    ASSERT_EQ(user_version(path), 4);
    /* A reader refuses it until a writer has upgraded it. */
    s = NULL;
    ASSERT_EQ(oe_sqlite_store_new(path, 1, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "start a writer first");
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    if (!s)
        return;
    ASSERT_EQ(user_version(path), OE_SQLITE_SCHEMA_VERSION);
    oe_execution found;
    ASSERT_EQ(oe_store_find_by_id(s, e.id, &found, err, sizeof err), 1);
    ASSERT_STREQ(found.nonce, "old-1");
    oe_execution_clear(&found);
    ASSERT_EQ(oe_store_find_by_nonce(s, "old-1", oe_ledger_key_of("old-1", strlen("old-1")), &found,
                                     err, sizeof err),
              1);
    oe_execution_clear(&found);
    oe_execution dup = e;
    snprintf(dup.id, sizeof dup.id, "%s", "00000000-0000-4000-8000-000000000002");
    ASSERT_EQ(oe_store_begin(s, err, sizeof err), 0);
    oe_execution_set_keys(&dup);
    ASSERT_EQ(oe_store_insert_execution(s, &dup, err, sizeof err), OE_EDUP_NONCE);
    oe_store_rollback(s);
    /* Another nonce with the old approval id. */
    dup.nonce = "other-1";
    ASSERT_EQ(oe_store_begin(s, err, sizeof err), 0);
    oe_execution_set_keys(&dup);
    ASSERT_EQ(oe_store_insert_execution(s, &dup, err, sizeof err), OE_EDUP_APPROVAL);
    oe_store_rollback(s);
    oe_execution fresh = e;
    fresh.nonce = "new-1";
    fresh.approval_id = "approval-2";
    memcpy(fresh.id, dup.id, sizeof fresh.id);
    ASSERT_EQ(oe_store_begin(s, err, sizeof err), 0);
    oe_execution_set_keys(&fresh);
    ASSERT_EQ(oe_store_insert_execution(s, &fresh, err, sizeof err), 0);
    ASSERT_EQ(oe_store_commit(s, err, sizeof err), 0);
    ASSERT_EQ(oe_store_count_executions(s), 2);
    ASSERT_EQ(oe_store_find_by_id(s, dup.id, &found, err, sizeof err), 1);
    ASSERT_STREQ(found.nonce, "new-1");
    oe_execution_clear(&found);
    ASSERT_EQ(
        oe_store_find_by_id(s, "00000000-0000-4000-8000-000000000003", &found, err, sizeof err), 0);
    oe_store_free(s);
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT id_bucket FROM executions ORDER BY seq", -1, &q, NULL),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_type(q, 0), SQLITE_NULL);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'",
                                 -1, &q, NULL),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    remove_ledger(path);
    rmdir(dir);
}

int main(void)
{
    RUN_TEST(test_url_kinds);
    RUN_TEST(test_mask);
    RUN_TEST(test_sqlite_schema_versions);
    RUN_TEST(test_sqlite_keys);
    RUN_TEST(test_payloads_kept);
    RUN_TEST(test_sqlite_migrate_keeps_rows);
    RUN_TEST(test_sqlite_v4_upgraded);
    return TEST_REPORT();
}
