/* The SQLite ledger (ledger.h, engine/store.h). A store is one connection
 * with its prepared statements, guarded by its own mutex, so any thread may
 * use it; the engine's writer and the admin server's reader are separate
 * stores. The creator frees it with oe_store_free. Records returned by
 * look-ups belong to the caller (oe_execution_clear). */
#include "ledger.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The schema, as steps from version 0 (an empty file). PRAGMA user_version
 * holds the version reached; from version 2 on, schema_migrations records
 * when each step was applied. Steps are never edited once released: a
 * change is a new step. */
static const char schema_v1[] = "CREATE TABLE executions ("
                                "  id TEXT PRIMARY KEY,"
                                "  nonce TEXT NOT NULL UNIQUE,"
                                "  action TEXT NOT NULL,"
                                "  request_hash TEXT NOT NULL,"
                                "  tenant_id TEXT NOT NULL,"
                                "  approval_id TEXT UNIQUE,"
                                "  approved INTEGER NOT NULL,"
                                "  result_json TEXT NOT NULL,"
                                "  receipt TEXT NOT NULL,"
                                "  created_at REAL NOT NULL"
                                ") WITHOUT ROWID;"
                                "CREATE TABLE rejections ("
                                "  seq INTEGER PRIMARY KEY,"
                                "  nonce TEXT,"
                                "  action TEXT,"
                                "  request_hash TEXT,"
                                "  error_code TEXT NOT NULL,"
                                "  detail TEXT NOT NULL,"
                                "  created_at REAL NOT NULL"
                                ");"
                                "CREATE INDEX rejections_nonce ON rejections(nonce);";

/* Version 2: the version table, and executions in the order they were
 * recorded (for audit exports). */
static const char schema_v2[] =
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL);"
    "INSERT INTO schema_migrations VALUES (1, NULL);"
    "CREATE INDEX executions_created ON executions(created_at);";

/* Version 3: executions in a rowid table, in the order recorded (an
 * insert appends), found through compact integer keys: the first 8 bytes
 * of the SHA-256 of the nonce, id and approval id (openexec_key(), oe_ledger_key_of).
 * Version 2 clustered the table on the random id and indexed the text of
 * the nonce, id and created_at: every insert wrote random pages of four
 * growing B-trees. The keys are not unique (two texts may share one, so a
 * look-up compares the text too); triggers keep nonce and approval id
 * unique, checking through the same indexes. seq orders audit exports. */
static const char schema_v3[] =
    "CREATE TABLE executions_v3 ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL,"
    "  nonce TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  request_hash TEXT NOT NULL,"
    "  tenant_id TEXT NOT NULL,"
    "  approval_id TEXT,"
    "  approved INTEGER NOT NULL,"
    "  result_json TEXT NOT NULL,"
    "  receipt TEXT NOT NULL,"
    "  created_at REAL NOT NULL,"
    "  nonce_key INTEGER NOT NULL,"
    "  id_key INTEGER NOT NULL,"
    "  approval_key INTEGER"
    ");"
    "INSERT INTO executions_v3 (id, nonce, action, request_hash, tenant_id, approval_id,"
    "  approved, result_json, receipt, created_at, nonce_key, id_key, approval_key)"
    "  SELECT id, nonce, action, request_hash, tenant_id, approval_id, approved, result_json,"
    "  receipt, created_at, openexec_key(nonce), openexec_key(id), openexec_key(approval_id)"
    "  FROM executions ORDER BY created_at, id;"
    "DROP TABLE executions;"
    "ALTER TABLE executions_v3 RENAME TO executions;"
    "CREATE INDEX executions_nonce_key ON executions(nonce_key);"
    "CREATE INDEX executions_id_key ON executions(id_key);"
    "CREATE INDEX executions_approval_key ON executions(approval_key)"
    "  WHERE approval_key IS NOT NULL;"
    "CREATE TRIGGER executions_unique BEFORE INSERT ON executions BEGIN"
    "  SELECT RAISE(ABORT, 'UNIQUE constraint failed: executions.nonce')"
    "    WHERE EXISTS (SELECT 1 FROM executions"
    "                  WHERE nonce_key = NEW.nonce_key AND nonce = NEW.nonce);"
    "  SELECT RAISE(ABORT, 'UNIQUE constraint failed: executions.approval_id')"
    "    WHERE NEW.approval_id IS NOT NULL AND EXISTS (SELECT 1 FROM executions"
    "                  WHERE approval_key = NEW.approval_key AND approval_id = NEW.approval_id);"
    "  SELECT RAISE(ABORT, 'executions: a key does not match its text')"
    "    WHERE NEW.nonce_key IS NOT openexec_key(NEW.nonce) OR NEW.id_key IS NOT "
    "openexec_key(NEW.id)"
    "       OR NEW.approval_key IS NOT openexec_key(NEW.approval_id);"
    "END;";

/* Version 4: the request's payload (canonical JSON, cut when longer than
 * OE_LEDGER_PAYLOAD_MAX_BYTES), as the original's execution_log kept it;
 * NULL in older rows and when only the hash is kept. */
static const char schema_v4[] = "ALTER TABLE executions ADD COLUMN payload TEXT;"
                                "ALTER TABLE rejections ADD COLUMN payload TEXT;";

/* Version 5: the id index clustered by insertion order. Both key indexes
 * of version 3 took each insert at a random leaf: once they outgrew the
 * page cache, a batch of 5,000 dirtied ~0.8 pages per row in each index,
 * all written to the WAL at commit and copied back by the checkpoint
 * (bench/growth.sh: from 53,000/s on an empty ledger to 18,000/s past 1.8
 * million rows). The nonce index must stay one global B-tree (it refuses a
 * duplicate nonce, through the trigger); ids need no such guarantee (an id
 * is derived from the nonce) and are only looked up (admin server, `ledger
 * show`). So ids are indexed by (id_bucket, id_key): id_bucket is the
 * insert's seq >> OE_SQLITE_ID_BUCKET_SHIFT, so a batch only writes leaves
 * of the newest bucket; a look-up probes each bucket (one B-tree descent
 * per 2^OE_SQLITE_ID_BUCKET_SHIFT rows). Rows from before version 5 keep a
 * NULL bucket, probed too. */
static const char schema_v5[] =
    "ALTER TABLE executions ADD COLUMN id_bucket INTEGER;"
    "DROP INDEX executions_id_key;"
    "CREATE INDEX executions_id_bucket_key ON executions(id_bucket, id_key);";

/* Version 6: a second execution of a nonce or of an approval id is refused
 * by unique indexes on (key, text), checked in the B-tree descent the
 * insert makes anyway. Versions 3 to 5 refused it by a trigger that probed
 * the same indexes a second time (EXISTS) and recomputed the three keys
 * (openexec_key()) the engine had just computed. The keys are now the
 * writer's (oe_execution's, computed once per request by the engine):
 * a row written with a wrong key would escape both the look-up and the
 * refusal, so only this program writes executions. SQLite checks the
 * newest index first: the nonce's, made last, so that a row repeating
 * both a nonce and its approval id is refused as a replay of the nonce. */
static const char schema_v6[] =
    "DROP TRIGGER IF EXISTS executions_unique;"
    "DROP INDEX executions_approval_key;"
    "CREATE UNIQUE INDEX executions_approval ON executions(approval_key, approval_id)"
    "  WHERE approval_key IS NOT NULL;"
    "DROP INDEX executions_nonce_key;"
    "CREATE UNIQUE INDEX executions_nonce ON executions(nonce_key, nonce);";

/* Version 7: signed receipts (docs/protocol.md §8). Each writer's key has a log
 * (logs); every execution and rejection is a leaf of its writer's log at
 * log_index (NULL for rows written unsigned); each committed batch ends
 * with a signed checkpoint of the log, stored in the batch's transaction
 * with the compact range of the tree at its size, so that a writer
 * continues its log after a restart from the last checkpoint alone, and
 * the batch's leaf hashes, so that any entry can be proved later from its
 * batch alone (a replay) and an audit can name a changed row. A
 * checkpoint extends exactly one earlier size (from_size, unique per log):
 * two processes appending to one log from the same size cannot both
 * commit, so the log cannot fork. */
static const char schema_v7[] = "ALTER TABLE executions ADD COLUMN log_id INTEGER;"
                                "ALTER TABLE executions ADD COLUMN log_index INTEGER;"
                                "ALTER TABLE rejections ADD COLUMN log_id INTEGER;"
                                "ALTER TABLE rejections ADD COLUMN log_index INTEGER;"
                                "ALTER TABLE rejections ADD COLUMN tenant_id TEXT;"
                                "CREATE TABLE logs ("
                                "  log_id INTEGER PRIMARY KEY,"
                                "  origin TEXT NOT NULL UNIQUE,"
                                "  public_key BLOB NOT NULL,"
                                "  key_id TEXT NOT NULL,"
                                "  created_at REAL NOT NULL"
                                ");"
                                "CREATE TABLE checkpoints ("
                                "  log_id INTEGER NOT NULL,"
                                "  from_size INTEGER NOT NULL,"
                                "  size INTEGER NOT NULL,"
                                "  root BLOB NOT NULL,"
                                "  frontier BLOB NOT NULL,"
                                "  leaves BLOB NOT NULL,"
                                "  note TEXT NOT NULL,"
                                "  created_at REAL NOT NULL,"
                                "  PRIMARY KEY (log_id, size),"
                                "  UNIQUE (log_id, from_size)"
                                ") WITHOUT ROWID;";

/* Version 8: the code hash of the operator's Lua action that ran
 * (docs/actions.md), NULL for built-ins and older rows. */
static const char schema_v8[] = "ALTER TABLE executions ADD COLUMN action_code_hash TEXT;"
                                "ALTER TABLE rejections ADD COLUMN action_code_hash TEXT;";

static const char *const schema_steps[OE_SQLITE_SCHEMA_VERSION] = {
    schema_v1, schema_v2, schema_v3, schema_v4, schema_v5, schema_v6, schema_v7, schema_v8};

/* Rows per id bucket (schema version 5): 2^18 = 262,144 (a bucket's part
 * of the index, ~1,200 leaves, stays in the page cache). A look-up by id
 * in a ledger of a billion rows probes ~3,800 buckets (a few ms). */
#define OE_SQLITE_ID_BUCKET_SHIFT 18
#define OE_SQLITE_STR_(x) #x
#define OE_SQLITE_STR(x) OE_SQLITE_STR_(x)

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_BY_NONCE,
    ST_BY_ID,
    ST_ID_BUCKETS,
    ST_APPROVAL_USED,
    ST_INSERT_EXEC,
    ST_INSERT_REJ,
    ST_COUNT_EXEC,
    ST_COUNT_REJ,
    ST_LOG_ADD,
    ST_LOG_GET,
    ST_LOG_LAST,
    ST_CHECKPOINT_ADD,
    ST_LOG_BATCH,
    ST_LOG_FRONTIER,
    ST_LOG_LATEST,
    ST_COUNT
};

/* An execution's columns as look-ups and exports read them (read_execution). */
#define EXECUTION_COLUMNS                                                                          \
    "id, request_hash, receipt, nonce, action, tenant_id, approval_id, result_json, approved,"     \
    " created_at, payload, log_id, log_index, action_code_hash"
#define REJECTION_COLUMNS                                                                          \
    "nonce, action, request_hash, error_code, detail, created_at, payload, log_id, log_index,"     \
    " tenant_id, action_code_hash"

static const char *const statements[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_BY_NONCE] =
        "SELECT " EXECUTION_COLUMNS " FROM executions WHERE nonce_key = ?1 AND nonce = ?2",
    [ST_BY_ID] = "SELECT " EXECUTION_COLUMNS
                 " FROM executions WHERE id_bucket IS ?3 AND id_key = ?1 AND id = ?2",
    [ST_ID_BUCKETS] = "SELECT max(id_bucket) FROM executions",
    [ST_APPROVAL_USED] = "SELECT 1 FROM executions WHERE approval_key = ?1 AND approval_id = ?2",
    [ST_INSERT_EXEC] = "INSERT INTO executions (id, request_hash, receipt, nonce, action,"
                       " tenant_id, approval_id, result_json, approved, created_at,"
                       " nonce_key, id_key, approval_key, payload, log_id, log_index,"
                       " action_code_hash, id_bucket)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                       " ?15, ?16, ?17,"
                       " (SELECT coalesce(max(seq), 0) + 1 FROM executions) >> " OE_SQLITE_STR(
                           OE_SQLITE_ID_BUCKET_SHIFT) ")",
    [ST_INSERT_REJ] = "INSERT INTO rejections (nonce, action, request_hash, error_code, detail,"
                      " created_at, payload, log_id, log_index, tenant_id, action_code_hash)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_COUNT_EXEC] = "SELECT count(*) FROM executions",
    [ST_COUNT_REJ] = "SELECT count(*) FROM rejections",
    [ST_LOG_ADD] = "INSERT INTO logs (origin, public_key, key_id, created_at)"
                   " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (origin) DO NOTHING",
    [ST_LOG_GET] = "SELECT log_id, public_key FROM logs WHERE origin = ?1",
    [ST_LOG_LAST] = "SELECT size, frontier FROM checkpoints WHERE log_id = ?1"
                    " ORDER BY size DESC LIMIT 1",
    [ST_CHECKPOINT_ADD] = "INSERT INTO checkpoints (log_id, from_size, size, root, frontier,"
                          " leaves, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_LOG_BATCH] = "SELECT c.from_size, c.size, c.note, c.leaves, l.origin FROM checkpoints c"
                     " JOIN logs l ON l.log_id = c.log_id"
                     " WHERE c.log_id = ?1 AND c.size > ?2 ORDER BY c.size LIMIT 1",
    [ST_LOG_FRONTIER] = "SELECT frontier FROM checkpoints WHERE log_id = ?1 AND size = ?2",
    [ST_LOG_LATEST] = "SELECT c.note FROM checkpoints c JOIN logs l ON l.log_id = c.log_id"
                      " WHERE l.origin = ?1 ORDER BY c.size DESC LIMIT 1",
};

typedef struct sqlite_store {
    oe_store base;
    sqlite3 *db;
    int readonly;
    char path[512];             /* as opened, for messages */
    sqlite3_stmt *st[ST_COUNT]; /* prepared once, reset after each use */
    sqlite3_stmt *rows;         /* the open oe_store_log_rows read, or NULL */
    int rows_done;              /* its last row was read (a step would start it again) */
    pthread_mutex_t lock;       /* serialises use of the statements */
} sqlite_store;

/* openexec_key(text): oe_ledger_key_of for SQL (the version 3 migration);
 * NULL for NULL. */
static void sql_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    const unsigned char *t = sqlite3_value_text(argv[0]);
    if (!t) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    sqlite3_result_int64(ctx,
                         oe_ledger_key_of((const char *)t, (size_t)sqlite3_value_bytes(argv[0])));
}

/* The oe_rc of a SQLite result code: a file locked by another process
 * past the busy timeout is transient (OE_EUNAVAIL), the rest is not
 * (OE_ESTORE). */
static int failure_of(int code)
{
    code &= 0xff; /* the primary code of an extended one */
    return code == SQLITE_BUSY || code == SQLITE_LOCKED ? OE_EUNAVAIL : OE_ESTORE;
}

/* A failure with its reason, classified by failure_of. */
static int store_error(sqlite_store *s, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s: %s", what, s->db ? sqlite3_errmsg(s->db) : "no database");
    return failure_of(s->db ? sqlite3_errcode(s->db) : SQLITE_ERROR);
}

/* PRAGMA quick_check at start-up: a damaged ledger is refused before the
 * service says it is ready, not found by the first batch that touches the
 * damaged page. Linear in the size of the file (about a second per GB).
 * Returns OE_OK, or OE_ESTORE (or store_error's code when the check cannot
 * be prepared) with a reason in err. */
static int check_integrity(sqlite_store *s, char *err, size_t errlen)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &q, NULL) != SQLITE_OK)
        return store_error(s, err, errlen, "checking the ledger");
    int rc = sqlite3_step(q);
    const char *text = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : NULL;
    int ok = text && strcmp(text, "ok") == 0;
    if (!ok)
        snprintf(err, errlen, "%s: the ledger is damaged (quick_check: %.200s)", s->path,
                 text ? text : sqlite3_errmsg(s->db));
    sqlite3_finalize(q);
    return ok ? OE_OK : OE_ESTORE;
}

/* The schema version (PRAGMA user_version), or OE_ESTORE when it cannot be
 * read (the reason is sqlite3_errmsg's). No writer sets a negative version:
 * one found is taken as a failure too. */
static int schema_version(sqlite_store *s)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK)
        return OE_ESTORE;
    int version = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : OE_ESTORE;
    sqlite3_finalize(q);
    return version;
}

/* Brings the schema to OE_SQLITE_SCHEMA_VERSION, one step per transaction (a crash
 * between steps leaves a consistent older version, upgraded on the next
 * start). Several processes opening one new file at once: the write lock
 * (BEGIN IMMEDIATE) serialises them, and each re-reads the version under
 * it. Returns OE_OK, or with a reason in err: OE_EINVAL for a reader on an
 * older schema, OE_ESTORE for a newer one, or a failed step's code
 * (failure_of: OE_EUNAVAIL while another process holds the file). */
static int migrate(sqlite_store *s, char *err, size_t errlen)
{
    int version = schema_version(s);
    if (version < 0)
        return store_error(s, err, errlen, "reading the schema version");
    if (version == OE_SQLITE_SCHEMA_VERSION)
        return 0;
    if (version > OE_SQLITE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "%s: ledger schema version %d is newer than this binary's (%d): run a newer "
                 "openexec",
                 s->path, version, OE_SQLITE_SCHEMA_VERSION);
        return OE_ESTORE;
    }
    if (s->readonly) {
        /* Not the ledger's failure: a reader was opened where a writer (or
         * the migration) has to go first. */
        snprintf(err, errlen,
                 "%s: ledger schema version %d is older than %d: start a writer first "
                 "(or run `openexec ledger migrate`)",
                 s->path, version, OE_SQLITE_SCHEMA_VERSION);
        return OE_EINVAL;
    }
    for (;;) {
        char *msg = NULL;
        int code; /* the failed call's result, read before any ROLLBACK */
        if ((code = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg)) != SQLITE_OK)
            goto failed;
        version = schema_version(s);
        if (version < 0 || version >= OE_SQLITE_SCHEMA_VERSION) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return version < 0 ? store_error(s, err, errlen, "reading the schema version") : 0;
        }
        char bump[200];
        if (version + 1 >= 2)
            snprintf(bump, sizeof bump,
                     "INSERT INTO schema_migrations VALUES (%d, strftime('%%s','now'));"
                     "PRAGMA user_version = %d;",
                     version + 1, version + 1);
        else
            snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", version + 1);
        if ((code = sqlite3_exec(s->db, schema_steps[version], NULL, NULL, &msg)) != SQLITE_OK ||
            (code = sqlite3_exec(s->db, bump, NULL, NULL, &msg)) != SQLITE_OK) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            goto failed;
        }
        if ((code = sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg)) != SQLITE_OK)
            goto failed;
        continue;
    failed:
        snprintf(err, errlen, "%s: upgrading the ledger schema from version %d: %s", s->path,
                 version, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return failure_of(code);
    }
}

static const oe_store_ops sqlite_ops;
static void sqlite_free(oe_store *base);

/* The page cache of a connection, at most (SQLite fills it as pages are
 * read). Inserts write random pages of the two key indexes (about 20 bytes
 * an entry: ~40 MiB at a million executions), the table's last pages and
 * the WAL index; with SQLite's default 2 MiB every batch read its pages
 * back from the file (bench/kafka.sh: 16,800/s before, 26,000/s with 64
 * MiB, on the version 2 layout). */
#define OE_SQLITE_CACHE_KIB 32768

/* A writer's WAL. SQLite checkpoints inside the COMMIT that takes the WAL
 * past wal_autocheckpoint pages (1,000 by default): a batch writes several
 * thousand random index pages, so every batch was copied back to the
 * database file, the same hot pages again and again. At 32,768 pages (128
 * MiB) a page rewritten by many batches is copied once (bench/growth.sh,
 * 800,000 to a million rows: 21,000/s before, 23,900/s after); the file is
 * cut back to 64 MiB after a checkpoint. A checkpoint thread of its own was
 * measured too: no faster on two cores, where it competes with the worker
 * and the broker. */
#define OE_SQLITE_WAL_PRAGMAS                                                                      \
    "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=32768; "                                   \
    "PRAGMA journal_size_limit=67108864;"

/* Before SQLite's first use in the process: no allocation statistics (a
 * global mutex taken on every malloc inside SQLite, and nothing here reads
 * them). Too late (another part of the process used SQLite first) is
 * harmless: the default stays. */
static void configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int oe_sqlite_store_new(const char *path, int readonly, oe_store_sync sync, oe_store **out,
                        char *err, size_t errlen)
{
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    int rc;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, configure_sqlite);
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->lock, NULL);
    s->readonly = readonly;
    snprintf(s->path, sizeof s->path, "%s", path);
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    flags |= SQLITE_OPEN_NOMUTEX; /* our own mutex serialises every call */
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        rc = store_error(s, err, errlen, path);
        goto error;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (sqlite3_create_function(s->db, "openexec_key", 1,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                sql_key, NULL, NULL) != SQLITE_OK) {
        rc = store_error(s, err, errlen, path);
        goto error;
    }
    char *msg = NULL;
    char pragmas[300];
    snprintf(pragmas, sizeof pragmas,
             "%s PRAGMA synchronous=%s; PRAGMA foreign_keys=ON; PRAGMA cache_size=-%d;",
             readonly ? "" : OE_SQLITE_WAL_PRAGMAS, sync == OE_STORE_SYNC_FULL ? "FULL" : "NORMAL",
             OE_SQLITE_CACHE_KIB);
    if ((rc = sqlite3_exec(s->db, pragmas, NULL, NULL, &msg)) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : "cannot configure");
        sqlite3_free(msg);
        rc = failure_of(rc);
        goto error;
    }
    if (!readonly && (rc = check_integrity(s, err, errlen)) != OE_OK)
        goto error;
    if ((rc = migrate(s, err, errlen)) != OE_OK)
        goto error;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            rc = store_error(s, err, errlen, "preparing statements");
            goto error;
        }
    }
    *out = &s->base;
    return OE_OK;
error:
    sqlite_free(&s->base);
    return rc;
}

int oe_sqlite_migrate(const char *path, int *was, int *now, char *err, size_t errlen)
{
    oe_store *base = NULL;
    sqlite3 *peek = NULL;
    *was = 0;
    /* The version before: a file that does not exist yet is version 0. */
    if (sqlite3_open_v2(path, &peek, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite_store probe = {.db = peek};
        *was = schema_version(&probe);
    }
    sqlite3_close(peek);
    if (*was < 0)
        *was = 0;
    int rc = oe_sqlite_store_new(path, 0, OE_STORE_SYNC_FULL, &base, err, errlen);
    if (rc != OE_OK)
        return rc;
    *now = schema_version((sqlite_store *)base);
    if (*now < 0)
        rc = store_error((sqlite_store *)base, err, errlen, "reading the schema version");
    oe_store_free(base);
    return rc;
}

static void sqlite_free(oe_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_finalize(s->rows);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Runs a statement without results; the lock is held. */
static int step_simple(sqlite_store *s, int which, char *err, size_t errlen)
{
    sqlite3_stmt *q = s->st[which];
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : store_error(s, err, errlen, statements[which]);
}

static int run_simple(sqlite_store *s, int which, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    int result = step_simple(s, which, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return result;
}

/* A ledger deleted or replaced under a running writer would take records
 * into an unlinked file: after a restart their nonces would execute again.
 * SQLite compares the path's inode with the open file's (one stat). Checked
 * before a batch and after its commit (a file replaced during the batch:
 * the commit went to the unlinked file, so it must not count). The lock is
 * held. Returns OE_OK, or OE_ESTORE with a reason in err. */
static int check_not_moved(sqlite_store *s, char *err, size_t errlen)
{
    int moved = 0;
    if (s->readonly ||
        (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
         !moved))
        return OE_OK;
    snprintf(err, errlen,
             "the ledger %s was deleted or replaced while open: nothing more is recorded "
             "in it; restart on the intended file",
             s->path);
    return OE_ESTORE;
}

static int sqlite_begin(oe_store *base, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = check_not_moved(s, err, errlen);
    if (rc == 0)
        rc = step_simple(s, ST_BEGIN, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sqlite_commit(oe_store *base, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = step_simple(s, ST_COMMIT, err, errlen);
    if (rc == 0)
        rc = check_not_moved(s, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void sqlite_rollback(oe_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    char err[256];
    if (sqlite3_get_autocommit(s->db) == 0)
        run_simple(s, ST_ROLLBACK, err, sizeof err);
}

static void copy_fixed(char *dst, size_t size, sqlite3_stmt *q, int col)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

/* The row of q (EXECUTION_COLUMNS) into e, its strings borrowed from q
 * until the next step. */
static void read_execution(sqlite3_stmt *q, oe_execution *e)
{
    memset(e, 0, sizeof *e);
    copy_fixed(e->id, sizeof e->id, q, 0);
    copy_fixed(e->request_hash, sizeof e->request_hash, q, 1);
    copy_fixed(e->receipt, sizeof e->receipt, q, 2);
    e->nonce = (char *)sqlite3_column_text(q, 3);
    e->action = (char *)sqlite3_column_text(q, 4);
    e->tenant_id = (char *)sqlite3_column_text(q, 5);
    e->approval_id = (char *)sqlite3_column_text(q, 6);
    e->result_json = (char *)sqlite3_column_text(q, 7);
    e->approved = sqlite3_column_int(q, 8);
    e->created_at = sqlite3_column_double(q, 9);
    e->payload = (char *)sqlite3_column_text(q, 10);
    e->log_id = sqlite3_column_int64(q, 11); /* 0 when NULL: written unsigned */
    e->log_index = sqlite3_column_int64(q, 12);
    copy_fixed(e->action_code_hash, sizeof e->action_code_hash, q, 13);
}

/* Steps q (bound) once: 1 with the row copied into e, 0 for none, or a
 * failure. Resets q; the lock is held. */
static int find_step(sqlite_store *s, sqlite3_stmt *q, oe_execution *e, char *err, size_t errlen)
{
    int rc = sqlite3_step(q);
    int result;
    if (rc == SQLITE_ROW) {
        oe_execution row;
        read_execution(q, &row);
        result = 1;
        if (!row.nonce || !row.action || !row.tenant_id || !row.result_json ||
            oe_execution_copy(e, &row) != 0) {
            /* A store's failure, as store.h names them (pg_find and
             * execution_row say the same of a row they cannot hand over). */
            snprintf(err, errlen, "out of memory reading an execution");
            result = OE_ESTORE;
        }
    } else if (rc == SQLITE_DONE) {
        result = 0;
    } else {
        result = store_error(s, err, errlen, "looking up an execution");
    }
    sqlite3_reset(q);
    return result;
}

/* The newest id bucket (schema version 5), or -1 when no row has one. The
 * lock is held. */
static sqlite3_int64 newest_id_bucket(sqlite_store *s, int *failed)
{
    sqlite3_stmt *q = s->st[ST_ID_BUCKETS];
    int rc = sqlite3_step(q);
    sqlite3_int64 b = -1;
    if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
        b = sqlite3_column_int64(q, 0);
    *failed = rc != SQLITE_ROW;
    sqlite3_reset(q);
    return b;
}

static int find(sqlite_store *s, int which, const char *text, oe_ledger_key key, oe_execution *e,
                char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[which];
    sqlite3_bind_int64(q, 1, key);
    sqlite3_bind_text(q, 2, text, -1, SQLITE_STATIC);
    int result;
    if (which == ST_BY_ID) {
        /* Each bucket, newest first, then the rows from before buckets. */
        int failed;
        sqlite3_int64 b = newest_id_bucket(s, &failed);
        result = failed ? store_error(s, err, errlen, "looking up an execution") : 0;
        for (; result == 0 && b >= -1; b--) {
            if (b >= 0)
                sqlite3_bind_int64(q, 3, b);
            else
                sqlite3_bind_null(q, 3);
            result = find_step(s, q, e, err, errlen);
        }
    } else {
        result = find_step(s, q, e, err, errlen);
    }
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

static int sqlite_find(oe_store *base, int by_id, const char *text, oe_ledger_key key,
                       oe_execution *e, char *err, size_t errlen)
{
    return find((sqlite_store *)base, by_id ? ST_BY_ID : ST_BY_NONCE, text, key, e, err, errlen);
}

static int sqlite_approval_used(oe_store *base, const char *approval_id, oe_ledger_key key,
                                char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[ST_APPROVAL_USED];
    sqlite3_bind_int64(q, 1, key);
    sqlite3_bind_text(q, 2, approval_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int result = rc == SQLITE_ROW    ? 1
                 : rc == SQLITE_DONE ? 0
                                     : store_error(s, err, errlen, "approval lookup");
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

static void bind_text_or_null(sqlite3_stmt *q, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(q, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

/* A row's place in its writer's log (store.h), or NULLs when unsigned. */
static void bind_log_entry(sqlite3_stmt *q, int i, int64_t log_id, int64_t log_index)
{
    if (log_id > 0) {
        sqlite3_bind_int64(q, i, log_id);
        sqlite3_bind_int64(q, i + 1, log_index);
    } else {
        sqlite3_bind_null(q, i);
        sqlite3_bind_null(q, i + 1);
    }
}

static int sqlite_insert_execution(oe_store *base, const oe_execution *e, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[ST_INSERT_EXEC];
    sqlite3_bind_text(q, 1, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, e->request_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, e->receipt, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, e->nonce, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, e->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, e->tenant_id ? e->tenant_id : "", -1, SQLITE_STATIC);
    bind_text_or_null(q, 7, e->approval_id);
    sqlite3_bind_text(q, 8, e->result_json, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 9, e->approved);
    sqlite3_bind_double(q, 10, e->created_at);
    sqlite3_bind_int64(q, 11, e->nonce_key);
    sqlite3_bind_int64(q, 12, e->id_key);
    if (e->approval_id)
        sqlite3_bind_int64(q, 13, e->approval_key);
    else
        sqlite3_bind_null(q, 13);
    bind_text_or_null(q, 14, e->payload);
    bind_log_entry(q, 15, e->log_id, e->log_index);
    bind_text_or_null(q, 17, e->action_code_hash[0] ? e->action_code_hash : NULL);
    int rc = sqlite3_step(q);
    int result = 0;
    if (rc != SQLITE_DONE) {
        const char *msg = sqlite3_errmsg(s->db);
        int code = sqlite3_extended_errcode(s->db);
        if (code == SQLITE_CONSTRAINT_UNIQUE && strstr(msg, "UNIQUE constraint failed"))
            result = strstr(msg, "approval_id") ? OE_EDUP_APPROVAL : OE_EDUP_NONCE;
        else
            result = store_error(s, err, errlen, "storing an execution");
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

static int sqlite_insert_rejection(oe_store *base, const oe_rejection *r, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[ST_INSERT_REJ];
    const char *vals[] = {r->nonce, r->action, r->request_hash, r->error_code, r->detail};
    for (int i = 0; i < 5; i++)
        bind_text_or_null(q, i + 1, vals[i]);
    sqlite3_bind_double(q, 6, r->created_at);
    bind_text_or_null(q, 7, r->payload);
    bind_log_entry(q, 8, r->log_id, r->log_index);
    bind_text_or_null(q, 10, r->tenant_id);
    bind_text_or_null(q, 11, r->action_code_hash);
    int rc = sqlite3_step(q);
    int result = rc == SQLITE_DONE ? 0 : store_error(s, err, errlen, "storing a rejection");
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

static long long count(sqlite_store *s, int which)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[which];
    int rc = sqlite3_step(q);
    long long n = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : failure_of(rc);
    sqlite3_reset(q);
    pthread_mutex_unlock(&s->lock);
    return n;
}

static long long sqlite_count(oe_store *base, int rejections)
{
    return count((sqlite_store *)base, rejections ? ST_COUNT_REJ : ST_COUNT_EXEC);
}

/* Where the rows of an iteration go: the caller's function (one of the
 * two) and its context. */
typedef struct {
    oe_store_execution_fn execution;
    oe_store_rejection_fn rejection;
    void *ctx;
} row_sink;

/* One row of an iteration: converts it and hands it to the sink. Returns
 * what the sink returns, or OE_ESTORE with err set. */
typedef int (*row_fn)(sqlite3_stmt *q, const row_sink *to, char *err, size_t errlen);

/* Runs sql (binding nonce to ?1 when given) and hands each row to row.
 * The statement is prepared for it: audits are rare. The lock is held
 * throughout (a reader store, not the engine's writer). */
static int each_row(sqlite_store *s, const char *sql, const char *nonce, const char *what,
                    row_fn row, const row_sink *to, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q;
    int result = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        result = store_error(s, err, errlen, what);
        pthread_mutex_unlock(&s->lock);
        return result;
    }
    if (nonce)
        sqlite3_bind_text(q, 1, nonce, -1, SQLITE_STATIC);
    int rc;
    while (result == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW)
        result = row(q, to, err, errlen);
    if (result == 0 && rc != SQLITE_DONE)
        result = store_error(s, err, errlen, what);
    sqlite3_finalize(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

static int execution_row(sqlite3_stmt *q, const row_sink *to, char *err, size_t errlen)
{
    oe_execution e;
    read_execution(q, &e);
    if (!e.nonce || !e.action || !e.tenant_id || !e.result_json) {
        snprintf(err, errlen, "an execution with a missing field, or out of memory");
        return OE_ESTORE;
    }
    return to->execution(to->ctx, &e);
}

static int rejection_row(sqlite3_stmt *q, const row_sink *to, char *err, size_t errlen)
{
    oe_rejection r = {
        .nonce = (const char *)sqlite3_column_text(q, 0),
        .action = (const char *)sqlite3_column_text(q, 1),
        .request_hash = (const char *)sqlite3_column_text(q, 2),
        .error_code = (const char *)sqlite3_column_text(q, 3),
        .detail = (const char *)sqlite3_column_text(q, 4),
        .created_at = sqlite3_column_double(q, 5),
        .payload = (const char *)sqlite3_column_text(q, 6),
        .log_id = sqlite3_column_int64(q, 7),
        .log_index = sqlite3_column_int64(q, 8),
        .tenant_id = (const char *)sqlite3_column_text(q, 9),
        .action_code_hash = (const char *)sqlite3_column_text(q, 10),
    };
    if (!r.error_code || !r.detail) {
        snprintf(err, errlen, "a rejection with a missing field, or out of memory");
        return OE_ESTORE;
    }
    return to->rejection(to->ctx, &r);
}

static int sqlite_each_execution(oe_store *base, oe_store_execution_fn fn, void *ctx, char *err,
                                 size_t errlen)
{
    return each_row((sqlite_store *)base,
                    "SELECT " EXECUTION_COLUMNS " FROM executions ORDER BY seq", NULL,
                    "reading the executions", execution_row,
                    &(row_sink){.execution = fn, .ctx = ctx}, err, errlen);
}

static int sqlite_each_rejection(oe_store *base, const char *nonce, oe_store_rejection_fn fn,
                                 void *ctx, char *err, size_t errlen)
{
    return each_row((sqlite_store *)base,
                    nonce ? "SELECT " REJECTION_COLUMNS
                            " FROM rejections WHERE nonce = ?1 ORDER BY seq"
                          : "SELECT " REJECTION_COLUMNS " FROM rejections ORDER BY seq",
                    nonce, "reading the rejections", rejection_row,
                    &(row_sink){.rejection = fn, .ctx = ctx}, err, errlen);
}

static int sqlite_log_open(oe_store *base, const oe_log_key *key, double now, int64_t *log_id,
                           oe_merkle_compact *state, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    int result = step_simple(s, ST_BEGIN, err, errlen);
    int in_txn = result == 0;
    sqlite3_stmt *q = s->st[ST_LOG_ADD];
    if (result == 0) {
        sqlite3_bind_text(q, 1, key->origin, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, key->public_key, 32, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, key->key_id, -1, SQLITE_STATIC);
        sqlite3_bind_double(q, 4, now);
        if (sqlite3_step(q) != SQLITE_DONE)
            result = store_error(s, err, errlen, "adding the receipts log");
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
    }
    if (result == 0) {
        q = s->st[ST_LOG_GET];
        sqlite3_bind_text(q, 1, key->origin, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_ROW) {
            result = store_error(s, err, errlen, "reading the receipts log");
        } else {
            *log_id = sqlite3_column_int64(q, 0);
            const void *pub = sqlite3_column_blob(q, 1);
            if (sqlite3_column_bytes(q, 1) != 32 || memcmp(pub, key->public_key, 32) != 0) {
                snprintf(err, errlen,
                         "%s: the receipts log %.200s belongs to another key: give this key "
                         "another origin (OPENEXEC_LOG_ORIGIN)",
                         s->path, key->origin);
                result = OE_EINVAL;
            }
        }
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
    }
    if (result == 0) {
        q = s->st[ST_LOG_LAST];
        sqlite3_bind_int64(q, 1, *log_id);
        int rc = sqlite3_step(q);
        oe_merkle_compact_init(state);
        if (rc == SQLITE_ROW) {
            int64_t size = sqlite3_column_int64(q, 0);
            int bytes = sqlite3_column_bytes(q, 1);
            const void *frontier = sqlite3_column_blob(q, 1);
            if (size < 0 || bytes != 32 * __builtin_popcountll((uint64_t)size)) {
                snprintf(err, errlen, "%s: the last checkpoint of log %.200s is damaged", s->path,
                         key->origin);
                result = OE_ESTORE;
            } else {
                state->size = (uint64_t)size;
                if (bytes)
                    memcpy(state->hashes, frontier, (size_t)bytes);
            }
        } else if (rc != SQLITE_DONE) {
            result = store_error(s, err, errlen, "reading the last checkpoint");
        }
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
    }
    if (in_txn)
        result = result == 0 ? step_simple(s, ST_COMMIT, err, errlen)
                             : (step_simple(s, ST_ROLLBACK, NULL, 0), result);
    pthread_mutex_unlock(&s->lock);
    return result;
}

static int sqlite_insert_checkpoint(oe_store *base, const oe_checkpoint_row *c, char *err,
                                    size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[ST_CHECKPOINT_ADD];
    sqlite3_bind_int64(q, 1, c->log_id);
    sqlite3_bind_int64(q, 2, (int64_t)c->from_size);
    sqlite3_bind_int64(q, 3, (int64_t)c->state->size);
    sqlite3_bind_blob(q, 4, c->root, 32, SQLITE_STATIC);
    sqlite3_bind_blob(q, 5, c->state->hashes, 32 * __builtin_popcountll(c->state->size),
                      SQLITE_STATIC);
    sqlite3_bind_blob(q, 6, c->leaves, (int)(32 * (c->state->size - c->from_size)), SQLITE_STATIC);
    sqlite3_bind_text(q, 7, c->note, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 8, c->created_at);
    int rc = sqlite3_step(q);
    int result = 0;
    if (rc != SQLITE_DONE) {
        if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE ||
            sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
            result = OE_EDUP_LOG;
        else
            result = store_error(s, err, errlen, "storing a checkpoint");
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

static int sqlite_log_batch(oe_store *base, int64_t log_id, uint64_t index, oe_log_batch *out,
                            char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[ST_LOG_BATCH];
    sqlite3_bind_int64(q, 1, log_id);
    sqlite3_bind_int64(q, 2, (int64_t)index);
    int rc = sqlite3_step(q);
    int result = 0;
    if (rc == SQLITE_ROW) {
        int64_t from = sqlite3_column_int64(q, 0), size = sqlite3_column_int64(q, 1);
        const char *note = (const char *)sqlite3_column_text(q, 2);
        int bytes = sqlite3_column_bytes(q, 3);
        const void *leaves = sqlite3_column_blob(q, 3);
        const char *origin = (const char *)sqlite3_column_text(q, 4);
        if (from < 0 || size <= from || !note || !origin || bytes != 32 * (size - from)) {
            snprintf(err, errlen, "%s: checkpoint %lld of log %lld is damaged", s->path,
                     (long long)size, (long long)log_id);
            result = OE_ESTORE;
        } else if (!(out->note = strdup(note)) || !(out->leaves = malloc((size_t)bytes))) {
            snprintf(err, errlen, "out of memory");
            result = OE_ENOMEM;
        } else {
            memcpy(out->leaves, leaves, (size_t)bytes);
            snprintf(out->origin, sizeof out->origin, "%s", origin);
            out->size = (uint64_t)size;
            out->base.size = (uint64_t)from;
            result = 1;
        }
    } else if (rc != SQLITE_DONE) {
        result = store_error(s, err, errlen, "reading a checkpoint");
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (result == 1 && out->base.size > 0) {
        /* The tree before the batch: the previous checkpoint's. */
        q = s->st[ST_LOG_FRONTIER];
        sqlite3_bind_int64(q, 1, log_id);
        sqlite3_bind_int64(q, 2, (int64_t)out->base.size);
        int bytes = 0;
        if (sqlite3_step(q) == SQLITE_ROW &&
            (bytes = sqlite3_column_bytes(q, 0)) == 32 * __builtin_popcountll(out->base.size)) {
            memcpy(out->base.hashes, sqlite3_column_blob(q, 0), (size_t)bytes);
        } else {
            snprintf(err, errlen, "%s: log %lld has no checkpoint of size %llu before its next",
                     s->path, (long long)log_id, (unsigned long long)out->base.size);
            result = OE_ESTORE;
        }
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
    }
    pthread_mutex_unlock(&s->lock);
    if (result != 1 && result != 0)
        oe_log_batch_clear(out);
    return result;
}

static int sqlite_log_checkpoint(oe_store *base, const char *origin, char **note, char *err,
                                 size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[ST_LOG_LATEST];
    sqlite3_bind_text(q, 1, origin, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int result = 0;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 0);
        if (!t || !(*note = strdup(t))) {
            snprintf(err, errlen, "out of memory");
            result = OE_ENOMEM;
        } else {
            result = 1;
        }
    } else if (rc != SQLITE_DONE) {
        result = store_error(s, err, errlen, "reading a checkpoint");
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

/* The columns each_checkpoint reads, in order. */
#define CHECKPOINT_COLUMNS                                                                         \
    "c.log_id, l.origin, l.public_key, c.from_size, c.size, c.root, c.leaves, c.frontier, c.note," \
    " c.created_at"

static int sqlite_each_checkpoint(oe_store *base, const char *origin, oe_store_checkpoint_fn fn,
                                  void *ctx, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q;
    const char *sql = origin ? "SELECT " CHECKPOINT_COLUMNS " FROM checkpoints c JOIN logs l"
                               " ON l.log_id = c.log_id WHERE l.origin = ?1 ORDER BY c.size"
                             : "SELECT " CHECKPOINT_COLUMNS " FROM checkpoints c JOIN logs l"
                               " ON l.log_id = c.log_id ORDER BY c.log_id, c.size";
    int result = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        result = store_error(s, err, errlen, "reading the checkpoints");
        pthread_mutex_unlock(&s->lock);
        return result;
    }
    if (origin)
        sqlite3_bind_text(q, 1, origin, -1, SQLITE_STATIC);
    int rc;
    while (result == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t from = sqlite3_column_int64(q, 3), size = sqlite3_column_int64(q, 4);
        oe_checkpoint_view v = {
            .log_id = sqlite3_column_int64(q, 0),
            .origin = (const char *)sqlite3_column_text(q, 1),
            .public_key = sqlite3_column_blob(q, 2),
            .from_size = (uint64_t)from,
            .size = (uint64_t)size,
            .root = sqlite3_column_blob(q, 5),
            .leaves = sqlite3_column_blob(q, 6),
            .frontier = sqlite3_column_blob(q, 7),
            .note = (const char *)sqlite3_column_text(q, 8),
            .created_at = sqlite3_column_double(q, 9),
        };
        if (from < 0 || size < from || !v.origin || !v.note || sqlite3_column_bytes(q, 2) != 32 ||
            sqlite3_column_bytes(q, 5) != 32 || sqlite3_column_bytes(q, 6) != 32 * (size - from) ||
            sqlite3_column_bytes(q, 7) != 32 * __builtin_popcountll((uint64_t)size)) {
            snprintf(err, errlen, "%s: checkpoint %lld of log %lld is damaged", s->path,
                     (long long)size, (long long)v.log_id);
            result = OE_ESTORE;
        } else {
            result = fn(ctx, &v);
        }
    }
    if (result == 0 && rc != SQLITE_DONE)
        result = store_error(s, err, errlen, "reading the checkpoints");
    sqlite3_finalize(q);
    pthread_mutex_unlock(&s->lock);
    return result;
}

/* The rows of a log (store.h oe_store_log_rows_open): executions and
 * rejections in one shape, kind first (0 or 1); the payload is left out
 * (it is no part of a leaf, and may be a megabyte). */
#define LOG_ROWS_OF(table, columns) "SELECT " columns " FROM " table " AS t"
#define LOG_ROW_EXECUTION                                                                          \
    "0 AS kind, id, request_hash, receipt, nonce, action, tenant_id, approval_id, result_json,"    \
    " approved, created_at, log_id, log_index, NULL AS error_code, NULL AS detail,"                \
    " action_code_hash"
#define LOG_ROW_REJECTION                                                                          \
    "1, NULL, request_hash, NULL, nonce, action, tenant_id, NULL, NULL, 0, created_at, log_id,"    \
    " log_index, error_code, detail, action_code_hash"
#define LOG_ROWS_SQL(where)                                                                        \
    LOG_ROWS_OF("executions", LOG_ROW_EXECUTION)                                                   \
    " WHERE " where " UNION ALL " LOG_ROWS_OF("rejections", LOG_ROW_REJECTION) " WHERE " where

static int sqlite_log_rows_open(oe_store *base, int64_t log_id, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    const char *sql =
        log_id > 0 ? LOG_ROWS_SQL("t.log_id = ?1") " ORDER BY log_index NULLS FIRST"
                   : LOG_ROWS_SQL("(t.log_id IS NULL OR NOT EXISTS (SELECT 1 FROM checkpoints c"
                                  " WHERE c.log_id = t.log_id))");
    pthread_mutex_lock(&s->lock);
    if (sqlite3_prepare_v2(s->db, sql, -1, &s->rows, NULL) != SQLITE_OK) {
        int rc = store_error(s, err, errlen, "reading the rows of a log");
        sqlite3_finalize(s->rows);
        s->rows = NULL;
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    if (log_id > 0)
        sqlite3_bind_int64(s->rows, 1, log_id);
    s->rows_done = 0;
    return 0; /* the lock is held until the close */
}

/* Column col as text into a field of its own: 1 when it does not fit
 * whole (or holds a NUL byte). */
static int read_fixed(char *dst, size_t size, sqlite3_stmt *q, int col)
{
    copy_fixed(dst, size, q, col);
    return (size_t)sqlite3_column_bytes(q, col) != strlen(dst);
}

/* Column col as text (NULL for NULL), borrowed from q; *bad set when it
 * holds a NUL byte (C reads it shorter than it is). */
static const char *read_text(sqlite3_stmt *q, int col, int *bad)
{
    const char *t = (const char *)sqlite3_column_text(q, col);
    if (t && (size_t)sqlite3_column_bytes(q, col) != strlen(t))
        *bad = 1;
    return t;
}

static int sqlite_log_rows_next(oe_store *base, oe_log_row *row, char *err, size_t errlen)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *q = s->rows;
    if (s->rows_done)
        return 0;
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        s->rows_done = 1;
        return rc == SQLITE_DONE ? 0 : store_error(s, err, errlen, "reading the rows of a log");
    }
    memset(row, 0, sizeof *row);
    int bad = 0;
    row->rejected = sqlite3_column_int(q, 0) != 0;
    int64_t log_id = sqlite3_column_int64(q, 11); /* 0 when NULL: written unsigned */
    int64_t log_index =
        sqlite3_column_type(q, 12) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 12);
    double created_at = sqlite3_column_double(q, 10);
    if (!row->rejected) {
        oe_execution *e = &row->execution;
        bad |= read_fixed(e->id, sizeof e->id, q, 1);
        bad |= read_fixed(e->request_hash, sizeof e->request_hash, q, 2);
        bad |= read_fixed(e->receipt, sizeof e->receipt, q, 3);
        e->nonce = (char *)read_text(q, 4, &bad);
        e->action = (char *)read_text(q, 5, &bad);
        e->tenant_id = (char *)read_text(q, 6, &bad);
        e->approval_id = (char *)read_text(q, 7, &bad);
        e->result_json = (char *)read_text(q, 8, &bad);
        e->approved = sqlite3_column_int(q, 9);
        bad |= read_fixed(e->action_code_hash, sizeof e->action_code_hash, q, 15);
        e->created_at = created_at;
        e->log_id = log_id;
        e->log_index = log_index;
    } else {
        oe_rejection *r = &row->rejection;
        r->request_hash = read_text(q, 2, &bad);
        r->nonce = read_text(q, 4, &bad);
        r->action = read_text(q, 5, &bad);
        r->tenant_id = read_text(q, 6, &bad);
        r->error_code = read_text(q, 13, &bad);
        r->detail = read_text(q, 14, &bad);
        r->action_code_hash = read_text(q, 15, &bad);
        r->created_at = created_at;
        r->log_id = log_id;
        r->log_index = log_index;
    }
    row->unreadable = bad;
    return 1;
}

static void sqlite_log_rows_close(oe_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    if (!s->rows)
        return;
    sqlite3_finalize(s->rows);
    s->rows = NULL;
    pthread_mutex_unlock(&s->lock);
}

static const oe_store_ops sqlite_ops = {
    .log_rows_open = sqlite_log_rows_open,
    .log_rows_next = sqlite_log_rows_next,
    .log_rows_close = sqlite_log_rows_close,
    .each_checkpoint = sqlite_each_checkpoint,
    .log_checkpoint = sqlite_log_checkpoint,
    .log_batch = sqlite_log_batch,
    .log_open = sqlite_log_open,
    .insert_checkpoint = sqlite_insert_checkpoint,
    .name = "sqlite",
    .free = sqlite_free,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .find = sqlite_find,
    .approval_used = sqlite_approval_used,
    .insert_execution = sqlite_insert_execution,
    .insert_rejection = sqlite_insert_rejection,
    .count = sqlite_count,
    .each_execution = sqlite_each_execution,
    .each_rejection = sqlite_each_rejection,
};
