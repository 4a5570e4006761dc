/* Tests ledger/ledger.c (which URL names which backend, and passwords
 * masked in messages) and the SQLite backend's schema steps. */
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
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), -1);
    ASSERT_CONTAINS(err, "newer than this binary");
    ASSERT_EQ(oe_sqlite_store_new(path, 1, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), -1);
    ASSERT_TRUE(s == NULL);

    /* An empty file opened read-only first: refused, not created. */
    char empty[128];
    snprintf(empty, sizeof empty, "%s/e.db", dir);
    FILE *f = fopen(empty, "w");
    ASSERT_TRUE(f != NULL);
    if (f)
        fclose(f);
    ASSERT_EQ(oe_sqlite_store_new(empty, 1, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), -1);
    ASSERT_CONTAINS(err, "start a writer first");
    unlink(path);
    unlink(empty);
    char side[160];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
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
        ASSERT_EQ(oe_store_insert_execution(s, &e, err, sizeof err), 0);
    }
    ASSERT_EQ(oe_store_commit(s, err, sizeof err), 0);
    oe_execution found;
    ASSERT_EQ(oe_store_find_by_nonce(s, "key-299", &found, err, sizeof err), 1);
    ASSERT_STREQ(found.id, "00000000-0000-4000-8000-000000000299");
    oe_execution_clear(&found);
    ASSERT_EQ(
        oe_store_find_by_id(s, "00000000-0000-4000-8000-000000000007", &found, err, sizeof err), 1);
    ASSERT_STREQ(found.nonce, "key-7");
    oe_execution_clear(&found);
    ASSERT_EQ(oe_store_find_by_nonce(s, "key-300", &found, err, sizeof err), 0);
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
    ASSERT_EQ(oe_store_insert_execution(s, &dup, err, sizeof err), OE_STORE_DUP_NONCE);
    oe_store_rollback(s);
    oe_store_free(s);
    char side[160];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    rmdir(dir);
}

int main(void)
{
    RUN_TEST(test_url_kinds);
    RUN_TEST(test_mask);
    RUN_TEST(test_sqlite_schema_versions);
    RUN_TEST(test_sqlite_keys);
    return TEST_REPORT();
}
