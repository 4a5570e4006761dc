/* The PostgreSQL ledger (ledger.h, engine/store.h): one database shared by
 * every worker of a group, on any number of hosts.
 *
 * Uniqueness is the database's: nonce and approval id are unique
 * constraints, and an execution is inserted with ON CONFLICT DO NOTHING.
 * Transactions run at READ COMMITTED, so when two workers race on one
 * nonce or one approval, the second insert waits for the first transaction
 * and, once that commits, inserts nothing; the engine then reads the winner
 * (a later statement sees it) and answers replay, conflict or "already
 * used". Two batches that wait on each other are a deadlock the server
 * breaks by aborting one: OE_ERETRY, the engine runs it again.
 *
 * A lost connection is reconnected on the next call; until then calls
 * return OE_EUNAVAIL. A connection lost during COMMIT leaves the
 * outcome unknown here: OE_EUNAVAIL, and the batch run again reads
 * back whatever was committed (its rows answer as replays), never a guess.
 * (Asking txid_status about the transaction id is not safe: after a crash
 * the server may hand out again an id whose transaction left no durable
 * trace, and report another transaction's commit for it.)
 *
 * One connection per store, guarded by its own mutex. Statements are
 * prepared once per connection.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/digest.h"
#include "ledger.h"

/* Schema steps from version 0; schema_migrations records each one. Steps
 * are never edited once released: a change is a new step. */
static const char *const schema_steps[OE_POSTGRES_SCHEMA_VERSION] = {
    "CREATE TABLE executions ("
    "  id text PRIMARY KEY,"
    "  nonce text NOT NULL UNIQUE,"
    "  action text NOT NULL,"
    "  request_hash text NOT NULL,"
    "  tenant_id text NOT NULL,"
    "  approval_id text UNIQUE,"
    "  approved boolean NOT NULL,"
    "  result_json text NOT NULL,"
    "  receipt text NOT NULL,"
    "  created_at double precision NOT NULL);"
    "CREATE TABLE rejections ("
    "  seq bigserial PRIMARY KEY,"
    "  nonce text,"
    "  action text,"
    "  request_hash text,"
    "  error_code text NOT NULL,"
    "  detail text NOT NULL,"
    "  created_at double precision NOT NULL);"
    "CREATE INDEX rejections_nonce ON rejections(nonce);",
    "CREATE INDEX executions_created ON executions(created_at);",
    /* 3: the request's payload (canonical JSON, cut when longer than
     * OE_LEDGER_PAYLOAD_MAX_BYTES); NULL in older rows and when only the
     * hash is kept. */
    "ALTER TABLE executions ADD COLUMN payload text;"
    "ALTER TABLE rejections ADD COLUMN payload text;",
    /* 4: signed receipts (docs/protocol.md §8), as SQLite's version 7: each writer's
     * log, every row's place in it, and the checkpoints; a checkpoint
     * extends exactly one earlier size of its log (from_size unique), so
     * two processes with one key cannot both commit from one size. */
    "ALTER TABLE executions ADD COLUMN log_id bigint;"
    "ALTER TABLE executions ADD COLUMN log_index bigint;"
    "ALTER TABLE rejections ADD COLUMN log_id bigint;"
    "ALTER TABLE rejections ADD COLUMN log_index bigint;"
    "ALTER TABLE rejections ADD COLUMN tenant_id text;"
    "CREATE TABLE logs ("
    "  log_id bigserial PRIMARY KEY,"
    "  origin text NOT NULL UNIQUE,"
    "  public_key bytea NOT NULL,"
    "  key_id text NOT NULL,"
    "  created_at double precision NOT NULL);"
    "CREATE TABLE checkpoints ("
    "  log_id bigint NOT NULL,"
    "  from_size bigint NOT NULL,"
    "  size bigint NOT NULL,"
    "  root bytea NOT NULL,"
    "  frontier bytea NOT NULL,"
    "  leaves bytea NOT NULL,"
    "  note text NOT NULL,"
    "  created_at double precision NOT NULL,"
    "  PRIMARY KEY (log_id, size),"
    "  UNIQUE (log_id, from_size));",
    /* 5: the code hash of the operator's Lua action that ran
     * (docs/actions.md), as SQLite's version 8. */
    "ALTER TABLE executions ADD COLUMN action_code_hash text;"
    "ALTER TABLE rejections ADD COLUMN action_code_hash text;",
};

/* Serialises migrations of one database by concurrent writers. */
#define MIGRATION_LOCK "7310585448129816419" /* "openexec" as a 64-bit number */

/* Every column of a row, its place in its writer's log last (NULL for a
 * row written unsigned). */
#define LOG_COLUMNS ", log_id, log_index"
#define COLUMNS                                                                                    \
    "id, request_hash, receipt, nonce, action, tenant_id, approval_id, result_json, approved,"     \
    " created_at, payload" LOG_COLUMNS ", action_code_hash"
#define REJECTION_COLUMNS                                                                          \
    "nonce, action, request_hash, error_code, detail, created_at, payload" LOG_COLUMNS ", "        \
    "tenant_id, action_code_hash"
#define EXEC_COLUMNS 14
#define REJ_COLUMNS 11

/* Every statement a worker runs is a SELECT or an INSERT: the ledger is
 * append-only, so the workers' role needs SELECT and INSERT on the tables
 * and USAGE on the rejections' sequence (nextval) and nothing else
 * (SECURITY.md). ON CONFLICT DO NOTHING needs only INSERT. DDL runs in
 * migrate() alone, for a role that may (check_schema). */
enum {
    PS_BY_NONCE,
    PS_BY_ID,
    PS_APPROVAL_USED,
    PS_FLUSH_EXEC,
    PS_FLUSH_REJ,
    PS_CHECKPOINT,
    PS_COUNT
};

static const struct {
    const char *name, *sql;
    int nparams;
} prepared[PS_COUNT] = {
    [PS_BY_NONCE] = {"oe_by_nonce", "SELECT " COLUMNS " FROM executions WHERE nonce = $1", 1},
    [PS_BY_ID] = {"oe_by_id", "SELECT " COLUMNS " FROM executions WHERE id = $1", 1},
    [PS_APPROVAL_USED] = {"oe_approval_used", "SELECT 1 FROM executions WHERE approval_id = $1", 1},
    /* A batch's rows in one statement, one array per column. */
    [PS_FLUSH_EXEC] = {"oe_flush_exec",
                       "INSERT INTO executions (" COLUMNS ") SELECT * FROM unnest($1::text[],"
                       " $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
                       " $8::text[], $9::boolean[], $10::float8[], $11::text[], $12::bigint[],"
                       " $13::bigint[], $14::text[])"
                       " ON CONFLICT DO NOTHING",
                       EXEC_COLUMNS},
    [PS_FLUSH_REJ] =
        {"oe_flush_rej",
         "INSERT INTO rejections (" REJECTION_COLUMNS ") SELECT * FROM"
         " unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
         " $6::float8[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::text[])",
         REJ_COLUMNS},
    /* A checkpoint that another process stored first (the same key from
     * the same size) is not written: 0 rows, OE_EDUP_LOG. */
    [PS_CHECKPOINT] = {"oe_checkpoint",
                       "INSERT INTO checkpoints (log_id, from_size, size, root, frontier, leaves,"
                       " note, created_at) VALUES ($1, $2, $3, decode($4, 'hex'),"
                       " decode($5, 'hex'), decode($6, 'hex'), $7, $8) ON CONFLICT DO NOTHING",
                       8},
};

/* A set of borrowed strings (open addressing, linear probing), each with
 * a value. An entry is never removed, only marked gone. */
typedef struct key_entry {
    const char *key;
    int gone;
    size_t value;
} key_entry;

typedef struct key_set {
    key_entry *slots;
    size_t cap; /* a power of two, or 0 */
    size_t used;
} key_set;

static size_t key_hash(const char *k)
{
    size_t h = 1469598103934665603ULL;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

static key_entry *key_find(const key_set *set, const char *k)
{
    if (!set->used || !k)
        return NULL;
    for (size_t i = key_hash(k) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slots[i].key)
            return NULL;
        if (strcmp(set->slots[i].key, k) == 0)
            return &set->slots[i];
    }
}

static void key_insert(key_set *set, const char *k, size_t value)
{
    size_t i = key_hash(k) & (set->cap - 1);
    while (set->slots[i].key)
        i = (i + 1) & (set->cap - 1);
    set->slots[i] = (key_entry){.key = k, .value = value};
    set->used++;
}

/* Adds k (once) with value, growing the table past half full. Returns OE_OK
 * or OE_ENOMEM. */
static int key_add(key_set *set, const char *k, size_t value)
{
    if (key_find(set, k))
        return OE_OK;
    if (2 * (set->used + 1) > set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 64;
        key_entry *slots = calloc(cap, sizeof *slots), *old = set->slots;
        if (!slots)
            return OE_ENOMEM;
        size_t oldcap = set->cap;
        set->slots = slots;
        set->cap = cap;
        set->used = 0;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].key) {
                key_insert(set, old[i].key, old[i].value);
                key_find(set, old[i].key)->gone = old[i].gone;
            }
        free(old);
    }
    key_insert(set, k, value);
    return OE_OK;
}

static void key_set_clear(key_set *set)
{
    if (set->used)
        memset(set->slots, 0, set->cap * sizeof *set->slots);
    set->used = 0;
}

/* 1 when k is in the set and not gone. */
static int key_absent(const key_set *set, const char *k)
{
    const key_entry *e = key_find(set, k);
    return e && !e->gone;
}

static void key_gone(key_set *set, const char *k)
{
    key_entry *e = key_find(set, k);
    if (e)
        e->gone = 1;
}

/* A rejected attempt waiting for the batch's COMMIT (owned strings). */
typedef struct pending_rejection {
    char *nonce, *action, *request_hash, *error_code, *detail, *payload, *tenant_id;
    char *action_code_hash;
    double created_at;
    int64_t log_id, log_index;
} pending_rejection;

/* The batch's checkpoint, written after its rows at COMMIT. */
typedef struct pending_checkpoint {
    int queued;
    char params[8][32]; /* log_id, from_size, size, -, -, -, -, created_at */
    char root[65];
    char *frontier; /* hex */
    char *leaves;   /* hex */
    char *note;
} pending_checkpoint;

typedef struct pg_store pg_store;
static int flush(pg_store *s, char *err, size_t errlen);
static int copy_execution(const oe_execution *src, oe_execution *e, char *err, size_t errlen);

struct pg_store {
    oe_store base;
    PGconn *conn;
    int readonly;
    int prepared; /* the statements exist on this connection */
    int in_txn;   /* BEGIN done, COMMIT/ROLLBACK not yet */
    char *url;    /* as given, for reconnecting */
    /* The open transaction's batch. Rows are written at COMMIT, all in
     * one statement per table (a round trip per batch, not per request);
     * until then look-ups answer from them. */
    key_set absent_nonces, absent_approvals; /* prefetched: not recorded */
    oe_execution *execs;                     /* owned copies, in order */
    size_t n_execs, cap_execs;
    key_set queued_nonces;    /* nonce -> index in execs */
    key_set queued_approvals; /* approval ids in execs */
    pending_rejection *rejs;
    size_t n_rejs, cap_rejs;
    pending_checkpoint checkpoint;
    /* The open oe_store_log_rows read (the lock held until its close). */
    int rows_open, rows_done; /* rows_done: its last result was read */
    PGresult *rows;           /* the rows at hand, or NULL */
    int rows_at;              /* the next of them */
    char shown[512];
    pthread_mutex_t lock;
};

/* A row's log_id and log_index from columns col and col + 1 (0 and 0
 * when NULL: a row written unsigned). */
static void read_log_entry(PGresult *r, int row, int col, int64_t *log_id, int64_t *log_index)
{
    *log_id = PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
    *log_index = PQgetisnull(r, row, col + 1) ? 0 : strtoll(PQgetvalue(r, row, col + 1), NULL, 10);
}

/* libpq's messages end with a newline; one line reads better in logs. */
static void copy_message(char *dst, size_t len, const char *what, const char *msg)
{
    snprintf(dst, len, "%s: %s", what, msg && *msg ? msg : "no reason given");
    for (char *p = dst; *p; p++)
        if (*p == '\n' || *p == '\t' || *p == '\r')
            *p = *(p + 1) ? ' ' : '\0';
}

/* Classifies a failed call: a lost connection or a server that is going
 * away or out of resources is transient (try later), a deadlock or
 * serialization failure says run the transaction again, the rest is
 * permanent. */
static int pg_fail(pg_store *s, PGresult *r, const char *what, char *err, size_t errlen)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    copy_message(err, errlen, what,
                 r && PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r)
                                                 : PQerrorMessage(s->conn));
    if (PQstatus(s->conn) != CONNECTION_OK)
        return OE_EUNAVAIL;
    if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
        return OE_ERETRY;
    /* 08 connection, 53 insufficient resources, 57 operator intervention
     * (shutdown, statement timeout), 58 system error. */
    if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
                  strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0))
        return OE_EUNAVAIL;
    return OE_ESTORE;
}

/* Runs sql (no parameters) and checks its result status. */
static int exec_simple(pg_store *s, const char *sql, ExecStatusType want, char *err, size_t errlen)
{
    PGresult *r = PQexec(s->conn, sql);
    int rc = PQresultStatus(r) == want ? 0 : pg_fail(s, r, sql, err, errlen);
    PQclear(r);
    return rc;
}

/* Server notices (e.g. "relation ... already exists, skipping" from the
 * idempotent migration) are not events of ours: libpq would print them on
 * stderr, past our log lines. Errors reach us as results. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *connect_to(const pg_store *s)
{
    /* Ours first: the URL's own parameters override them. A hung server
     * or a worker stopped mid-transaction must not hold the others for
     * ever: statements give up after 30 s, idle transactions after 60 s. */
    const char *options =
        s->readonly ? "-c statement_timeout=30000 -c default_transaction_read_only=on"
                    : "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000";
    const char *keys[] = {"connect_timeout",
                          "application_name",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "options",
                          "dbname",
                          NULL};
    const char *values[] = {"5", "openexec", "5", "2", "3", "15000", options, s->url, NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (conn)
        PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

/* (Re)connects; the lock is held. */
static int connect_now(pg_store *s, char *err, size_t errlen)
{
    if (s->conn)
        PQfinish(s->conn);
    s->prepared = 0;
    s->conn = connect_to(s);
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return 0;
    char what[600];
    snprintf(what, sizeof what, "%.200s: cannot connect", s->shown);
    copy_message(err, errlen, what, s->conn ? PQerrorMessage(s->conn) : "out of memory");
    return OE_EUNAVAIL;
}

/* Makes sure the connection is up and the statements prepared; the lock is
 * held. A connection lost inside a transaction loses that transaction (the
 * server rolls it back): report that rather than reconnect under it. */
static int ensure_connected(pg_store *s, char *err, size_t errlen)
{
    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        if (s->in_txn) {
            snprintf(err, errlen, "%.200s: connection lost during a transaction", s->shown);
            return OE_EUNAVAIL;
        }
        int rc = connect_now(s, err, errlen);
        if (rc != 0)
            return rc;
    }
    if (s->prepared)
        return 0;
    for (int i = 0; i < PS_COUNT; i++) {
        PGresult *r =
            PQprepare(s->conn, prepared[i].name, prepared[i].sql, prepared[i].nparams, NULL);
        int rc = PQresultStatus(r) == PGRES_COMMAND_OK
                     ? 0
                     : pg_fail(s, r, "preparing statements", err, errlen);
        PQclear(r);
        if (rc != 0)
            return rc;
    }
    s->prepared = 1;
    return 0;
}

/* Runs sql, which answers exactly one row, into *out (the caller clears
 * it); what names the step in a failure. */
static int query_row(pg_store *s, const char *sql, const char *what, PGresult **out, char *err,
                     size_t errlen)
{
    PGresult *r = PQexec(s->conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = pg_fail(s, r, what, err, errlen);
        PQclear(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Reads the schema version; 0 when there is no version table. The lock is
 * held. */
static int read_version(pg_store *s, int *version, char *err, size_t errlen)
{
    static const char what[] = "reading the schema version";
    PGresult *r;
    int rc =
        query_row(s, "SELECT to_regclass('schema_migrations') IS NOT NULL", what, &r, err, errlen);
    if (rc != 0)
        return rc;
    int exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    *version = 0;
    if (!exists)
        return 0;
    rc = query_row(s, "SELECT coalesce(max(version), 0) FROM schema_migrations", what, &r, err,
                   errlen);
    if (rc != 0)
        return rc;
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* Whether this connection's role may change the schema, asked of the
 * catalogue (no DDL is attempted): CREATE on the current schema, and
 * membership in the owner role of every ledger table that exists (ALTER
 * and CREATE INDEX need the owner). A worker given only the documented
 * grants (SECURITY.md) may not. The lock is held. */
static int may_migrate(pg_store *s, int *may, char *err, size_t errlen)
{
    PGresult *r;
    int rc = query_row(s,
                       "SELECT coalesce(has_schema_privilege(current_schema(), 'CREATE'), false)"
                       " AND coalesce(bool_and(pg_has_role(c.relowner, 'USAGE')), true)"
                       " FROM pg_class c WHERE c.oid IN (to_regclass('executions'),"
                       " to_regclass('rejections'), to_regclass('schema_migrations'),"
                       " to_regclass('logs'), to_regclass('checkpoints'))",
                       "reading the role's privileges", &r, err, errlen);
    if (rc != 0)
        return rc;
    *may = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

/* Creates or upgrades the schema in one transaction, under an advisory
 * lock so that workers starting together take turns. A step that must
 * wait more than 5 s for a table lock (ALTER TABLE waits for every open
 * transaction on the table, and every worker statement would queue behind
 * it) fails instead, so running workers are never stalled: run it again. */
static int migrate(pg_store *s, char *err, size_t errlen)
{
    int version = 0;
    int rc = exec_simple(s, "BEGIN", PGRES_COMMAND_OK, err, errlen);
    if (rc == 0)
        rc = exec_simple(s, "SET LOCAL lock_timeout = 5000", PGRES_COMMAND_OK, err, errlen);
    if (rc == 0)
        rc = exec_simple(s, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", PGRES_TUPLES_OK,
                         err, errlen);
    if (rc == 0)
        rc = exec_simple(s,
                         "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version integer PRIMARY KEY, applied_at double precision)",
                         PGRES_COMMAND_OK, err, errlen);
    if (rc == 0)
        rc = read_version(s, &version, err, errlen);
    if (rc == 0 && version > OE_POSTGRES_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "%.200s: ledger schema version %d is newer than this binary's (%d): run a newer "
                 "openexec",
                 s->shown, version, OE_POSTGRES_SCHEMA_VERSION);
        rc = OE_ESTORE;
    }
    for (; rc == 0 && version < OE_POSTGRES_SCHEMA_VERSION; version++) {
        char record[160];
        snprintf(record, sizeof record,
                 "INSERT INTO schema_migrations VALUES (%d, extract(epoch from now()))",
                 version + 1);
        rc = exec_simple(s, schema_steps[version], PGRES_COMMAND_OK, err, errlen);
        if (rc == 0)
            rc = exec_simple(s, record, PGRES_COMMAND_OK, err, errlen);
    }
    if (rc == 0)
        rc = exec_simple(s, "COMMIT", PGRES_COMMAND_OK, err, errlen);
    else
        PQclear(PQexec(s->conn, "ROLLBACK"));
    return rc;
}

/* At start: a current schema is used as it is, with no DDL (a worker with
 * the documented grants needs none). An older one is upgraded only when
 * the role may (may_migrate: an owner's role, as `make run` and the tests
 * use), else refused with what to run; a reader never upgrades. A newer
 * one is refused. */
/* A writer's role holds every privilege a worker uses (the documented
 * grants), asked of the catalogue at start: without one, the worker would
 * fail only at its first such statement (a rejection's sequence, say),
 * and stop. has_table_privilege is true when any privilege listed is
 * held, hence one call per privilege. */
static int check_grants(pg_store *s, char *err, size_t errlen)
{
    PGresult *r;
    int rc = query_row(s,
                       "SELECT has_table_privilege('executions', 'SELECT')"
                       " AND has_table_privilege('executions', 'INSERT')"
                       " AND has_table_privilege('rejections', 'SELECT')"
                       " AND has_table_privilege('rejections', 'INSERT')"
                       " AND has_table_privilege('schema_migrations', 'SELECT')"
                       " AND has_table_privilege('logs', 'SELECT')"
                       " AND has_table_privilege('logs', 'INSERT')"
                       " AND has_table_privilege('checkpoints', 'SELECT')"
                       " AND has_table_privilege('checkpoints', 'INSERT')"
                       " AND has_sequence_privilege(pg_get_serial_sequence('rejections', 'seq'),"
                       " 'USAGE')"
                       " AND has_sequence_privilege(pg_get_serial_sequence('logs', 'log_id'),"
                       " 'USAGE')",
                       "reading the role's privileges", &r, err, errlen);
    if (rc != 0)
        return rc;
    int ok = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (ok)
        return 0;
    snprintf(err, errlen,
             "%.200s: this role lacks a privilege workers use: SELECT and INSERT on executions, "
             "rejections, logs and checkpoints, SELECT on schema_migrations, USAGE on sequences "
             "rejections_seq_seq and logs_log_id_seq (the grants of SECURITY.md)",
             s->shown);
    return OE_ESTORE;
}

static int check_schema(pg_store *s, char *err, size_t errlen)
{
    int version = 0, may = 0;
    int rc = read_version(s, &version, err, errlen);
    if (rc == 0 && version == OE_POSTGRES_SCHEMA_VERSION)
        return s->readonly ? 0 : check_grants(s, err, errlen);
    if (rc != 0)
        return rc;
    if (version > OE_POSTGRES_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "%.200s: ledger schema version %d is newer than this binary's (%d): run a newer "
                 "openexec",
                 s->shown, version, OE_POSTGRES_SCHEMA_VERSION);
        return OE_ESTORE;
    }
    if (!s->readonly && (rc = may_migrate(s, &may, err, errlen)) != 0)
        return rc;
    if (may)
        return (rc = migrate(s, err, errlen)) != 0 ? rc : check_grants(s, err, errlen);
    snprintf(err, errlen,
             "%.200s: ledger schema version %d is older than this binary's (%d)%s: run "
             "`openexec ledger migrate` with the role that owns the ledger",
             s->shown, version, OE_POSTGRES_SCHEMA_VERSION,
             s->readonly ? "" : " and this role may not change it");
    return OE_ESTORE;
}

/* Forgets the open transaction's batch. */
static void clear_batch(pg_store *s)
{
    key_set_clear(&s->absent_nonces);
    key_set_clear(&s->absent_approvals);
    key_set_clear(&s->queued_nonces);
    key_set_clear(&s->queued_approvals);
    for (size_t i = 0; i < s->n_execs; i++)
        oe_execution_clear(&s->execs[i]);
    s->n_execs = 0;
    for (size_t i = 0; i < s->n_rejs; i++) {
        pending_rejection *p = &s->rejs[i];
        free(p->nonce);
        free(p->action);
        free(p->request_hash);
        free(p->error_code);
        free(p->detail);
        free(p->payload);
        free(p->tenant_id);
        free(p->action_code_hash);
    }
    s->n_rejs = 0;
    free(s->checkpoint.frontier);
    free(s->checkpoint.leaves);
    free(s->checkpoint.note);
    memset(&s->checkpoint, 0, sizeof s->checkpoint);
}

static void pg_free(oe_store *base)
{
    pg_store *s = (pg_store *)base;
    PQclear(s->rows);
    if (s->conn)
        PQfinish(s->conn);
    pthread_mutex_destroy(&s->lock);
    clear_batch(s);
    free(s->absent_nonces.slots);
    free(s->absent_approvals.slots);
    free(s->queued_nonces.slots);
    free(s->queued_approvals.slots);
    free(s->execs);
    free(s->rejs);
    free(s->url);
    free(s);
}

static const oe_store_ops pg_ops;

/* A store for url in *out, not connected yet (pg_free frees it). Returns
 * OE_OK, or with the reason in why OE_EINVAL (not a connection string) or
 * OE_ENOMEM. The URL is parsed first and masked for every message:
 * libpq's own reason for a string it cannot parse may quote the password
 * (an invalid %-escape in it), so only "cannot read" is said of it. */
static int pg_alloc(const char *url, pg_store **out, char *why, size_t whylen)
{
    *out = NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (!s || !(s->url = strdup(url))) {
        free(s);
        snprintf(why, whylen, "out of memory");
        return OE_ENOMEM;
    }
    s->base.ops = &pg_ops;
    pthread_mutex_init(&s->lock, NULL);
    oe_ledger_mask_url(url, s->shown, sizeof s->shown);
    char *parse_error = NULL;
    PQconninfoOption *parsed = PQconninfoParse(url, &parse_error);
    PQfreemem(parse_error);
    PQconninfoFree(parsed);
    if (!parsed) {
        snprintf(why, whylen, "%.400s: not a connection string libpq can read", s->shown);
        pg_free(&s->base);
        return OE_EINVAL;
    }
    *out = s;
    return OE_OK;
}

int oe_pg_store_new(const char *url, int readonly, oe_store **out, char *err, size_t errlen)
{
    char why[512];
    pg_store *s;
    int rc = pg_alloc(url, &s, why, sizeof why);
    if (rc == 0) {
        s->base.shared = 1;
        s->readonly = readonly;
        rc = connect_now(s, why, sizeof why);
    }
    if (rc == 0)
        rc = check_schema(s, why, sizeof why);
    if (rc == 0)
        rc = ensure_connected(s, why, sizeof why);
    if (rc != 0) {
        snprintf(err, errlen, "%s", why);
        if (s)
            pg_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return OE_OK;
}

int oe_pg_migrate(const char *url, int *was, int *now, char *err, size_t errlen)
{
    char why[512];
    pg_store *s;
    int rc = pg_alloc(url, &s, why, sizeof why);
    if (rc == 0)
        rc = connect_now(s, why, sizeof why);
    if (rc == 0)
        rc = read_version(s, was, why, sizeof why);
    if (rc == 0 && *was != OE_POSTGRES_SCHEMA_VERSION)
        rc = migrate(s, why, sizeof why);
    if (rc == 0)
        rc = read_version(s, now, why, sizeof why);
    if (rc != 0)
        snprintf(err, errlen, "%s", why);
    if (s)
        pg_free(&s->base);
    return rc;
}

static int pg_begin(oe_store *base, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    s->in_txn = 0;
    clear_batch(s);
    int rc = ensure_connected(s, err, errlen);
    if (rc == 0) {
        PGresult *r = PQexec(s->conn, "BEGIN ISOLATION LEVEL READ COMMITTED");
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            s->in_txn = 1;
        } else {
            rc = pg_fail(s, r, "beginning a transaction", err, errlen);
            PQclear(PQexec(s->conn, "ROLLBACK"));
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* The connection went during COMMIT: the transaction may or may not have
 * committed. Not a guess either way: the batch is run again (after the
 * ledger is back), and its look-ups find its rows if they were committed
 * (replays, same ids and receipts) or record them now if they were not. A
 * rejection of a batch that did commit is then recorded twice. */
static int resolve_commit(pg_store *s, char *err, size_t errlen)
{
    s->in_txn = 0;
    snprintf(err, errlen,
             "%.200s: the connection was lost during COMMIT; the batch runs again and reads "
             "back what was committed",
             s->shown);
    return OE_EUNAVAIL;
}

static int pg_commit(oe_store *base, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = flush(s, err, errlen);
    clear_batch(s);
    if (rc != 0) {
        /* Nothing is committed: roll back what the flush left open. */
        if (PQstatus(s->conn) == CONNECTION_OK)
            PQclear(PQexec(s->conn, "ROLLBACK"));
        s->in_txn = 0;
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    PGresult *r = PQexec(s->conn, "COMMIT");
    if (PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0) {
        s->in_txn = 0;
        rc = 0;
    } else if (PQstatus(s->conn) != CONNECTION_OK) {
        rc = resolve_commit(s, err, errlen);
    } else {
        /* A COMMIT of a failed transaction answers ROLLBACK. */
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? OE_ESTORE
                                                   : pg_fail(s, r, "COMMIT", err, errlen);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            snprintf(err, errlen, "%.200s: the transaction was rolled back by the server",
                     s->shown);
        s->in_txn = 0;
    }
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void pg_rollback(oe_store *base)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    clear_batch(s);
    if (s->in_txn && s->conn && PQstatus(s->conn) == CONNECTION_OK)
        PQclear(PQexec(s->conn, "ROLLBACK"));
    s->in_txn = 0;
    pthread_mutex_unlock(&s->lock);
}

/* Runs a prepared statement; the lock is held. Returns the result (to be
 * cleared) or NULL with the failure in *rc. Outside a transaction (the
 * admin server's look-ups) a lost connection is reconnected first. */
static PGresult *run(pg_store *s, int which, const char *const *params, int want, int *rc,
                     char *err, size_t errlen)
{
    *rc = 0;
    if (!s->in_txn && (*rc = ensure_connected(s, err, errlen)) != 0)
        return NULL;
    if (s->in_txn && PQstatus(s->conn) != CONNECTION_OK) {
        snprintf(err, errlen, "%.200s: connection lost during a transaction", s->shown);
        *rc = OE_EUNAVAIL;
        return NULL;
    }
    for (int attempt = 0;; attempt++) {
        PGresult *r = PQexecPrepared(s->conn, prepared[which].name, prepared[which].nparams, params,
                                     NULL, NULL, 0);
        if (PQresultStatus(r) == (ExecStatusType)want)
            return r;
        *rc = pg_fail(s, r, prepared[which].name, err, errlen);
        PQclear(r);
        /* Outside a transaction (a look-up of the admin server), a
         * connection found dead by this call (the server restarted while
         * it was idle) is reconnected and the look-up tried once more. */
        if (s->in_txn || attempt > 0 || PQstatus(s->conn) == CONNECTION_OK ||
            ensure_connected(s, err, errlen) != 0)
            return NULL;
    }
}

static char *dup_value(PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : strdup(PQgetvalue(r, 0, col));
}

/* The ledger keys are not used: PostgreSQL indexes the texts. */
static int pg_find(oe_store *base, int by_id, const char *key, oe_ledger_key unused_key,
                   oe_execution *e, char *err, size_t errlen)
{
    (void)unused_key;
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    const key_entry *q = !by_id && s->in_txn ? key_find(&s->queued_nonces, key) : NULL;
    if (q || (!by_id && s->in_txn && key_absent(&s->absent_nonces, key))) {
        int rc = q ? copy_execution(&s->execs[q->value], e, err, errlen) : 0;
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    const char *params[] = {key};
    int rc;
    PGresult *r = run(s, by_id ? PS_BY_ID : PS_BY_NONCE, params, PGRES_TUPLES_OK, &rc, err, errlen);
    if (r && PQntuples(r) == 0) {
        rc = 0;
    } else if (r) {
        memset(e, 0, sizeof *e);
        snprintf(e->id, sizeof e->id, "%s", PQgetvalue(r, 0, 0));
        snprintf(e->request_hash, sizeof e->request_hash, "%s", PQgetvalue(r, 0, 1));
        snprintf(e->receipt, sizeof e->receipt, "%s", PQgetvalue(r, 0, 2));
        e->nonce = dup_value(r, 3);
        e->action = dup_value(r, 4);
        e->tenant_id = dup_value(r, 5);
        e->approval_id = dup_value(r, 6);
        e->result_json = dup_value(r, 7);
        e->approved = PQgetvalue(r, 0, 8)[0] == 't';
        e->created_at = strtod(PQgetvalue(r, 0, 9), NULL);
        e->payload = dup_value(r, 10);
        read_log_entry(r, 0, 11, &e->log_id, &e->log_index);
        snprintf(e->action_code_hash, sizeof e->action_code_hash, "%s", PQgetvalue(r, 0, 13));
        rc = 1;
        if (!e->nonce || !e->action || !e->tenant_id || !e->result_json ||
            (!PQgetisnull(r, 0, 6) && !e->approval_id) || (!PQgetisnull(r, 0, 10) && !e->payload)) {
            oe_execution_clear(e);
            snprintf(err, errlen, "out of memory reading an execution");
            rc = OE_ESTORE;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_approval_used(oe_store *base, const char *approval_id, oe_ledger_key unused_key,
                            char *err, size_t errlen)
{
    (void)unused_key;
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    if (s->in_txn && (key_find(&s->queued_approvals, approval_id) ||
                      key_absent(&s->absent_approvals, approval_id))) {
        int used = key_find(&s->queued_approvals, approval_id) != NULL;
        pthread_mutex_unlock(&s->lock);
        return used;
    }
    const char *params[] = {approval_id};
    int rc;
    PGresult *r = run(s, PS_APPROVAL_USED, params, PGRES_TUPLES_OK, &rc, err, errlen);
    if (r)
        rc = PQntuples(r) > 0;
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static char *dup_or_null(const char *v, int *failed)
{
    char *d = v ? strdup(v) : NULL;
    if (v && !d)
        *failed = 1;
    return d;
}

/* Copies a queued record for a look-up. Returns 1, or a failure. */
static int copy_execution(const oe_execution *src, oe_execution *e, char *err, size_t errlen)
{
    if (oe_execution_copy(e, src) == 0)
        return 1;
    snprintf(err, errlen, "out of memory");
    return OE_ESTORE;
}

/* Queues an execution for the batch's COMMIT. A nonce or approval id
 * already queued in this batch is a duplicate at once; one recorded by
 * another worker meanwhile is found by the flush. */
static int pg_insert_execution(oe_store *base, const oe_execution *e, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (!s->in_txn) {
        snprintf(err, errlen, "an execution is recorded only inside a transaction");
        rc = OE_ESTORE;
    } else if (key_find(&s->queued_nonces, e->nonce)) {
        rc = OE_EDUP_NONCE;
    } else if (e->approval_id && key_find(&s->queued_approvals, e->approval_id)) {
        rc = OE_EDUP_APPROVAL;
    } else if (s->n_execs == s->cap_execs) {
        size_t cap = s->cap_execs ? 2 * s->cap_execs : 256;
        oe_execution *grown = realloc(s->execs, cap * sizeof *grown);
        if (grown) {
            s->execs = grown;
            s->cap_execs = cap;
        } else {
            rc = OE_ESTORE;
        }
    }
    if (rc == 0) {
        oe_execution *q = &s->execs[s->n_execs];
        if (copy_execution(e, q, err, errlen) != 1) {
            rc = OE_ESTORE;
        } else {
            s->n_execs++;
            if (key_add(&s->queued_nonces, q->nonce, s->n_execs - 1) != 0 ||
                (q->approval_id && key_add(&s->queued_approvals, q->approval_id, 0) != 0))
                rc = OE_ESTORE;
        }
    }
    if (rc == OE_ESTORE && !err[0])
        snprintf(err, errlen, "out of memory");
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Queues a rejected attempt for the batch's COMMIT. */
static int pg_insert_rejection(oe_store *base, const oe_rejection *r, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = 0, failed = 0;
    if (!s->in_txn) {
        snprintf(err, errlen, "a rejection is recorded only inside a transaction");
        rc = OE_ESTORE;
    } else if (s->n_rejs == s->cap_rejs) {
        size_t cap = s->cap_rejs ? 2 * s->cap_rejs : 64;
        pending_rejection *grown = realloc(s->rejs, cap * sizeof *grown);
        if (grown) {
            s->rejs = grown;
            s->cap_rejs = cap;
        } else {
            failed = 1;
        }
    }
    if (rc == 0 && !failed) {
        pending_rejection *p = &s->rejs[s->n_rejs++];
        p->nonce = dup_or_null(r->nonce, &failed);
        p->action = dup_or_null(r->action, &failed);
        p->request_hash = dup_or_null(r->request_hash, &failed);
        p->error_code = dup_or_null(r->error_code, &failed);
        p->detail = dup_or_null(r->detail, &failed);
        p->payload = dup_or_null(r->payload, &failed);
        p->tenant_id = dup_or_null(r->tenant_id, &failed);
        p->action_code_hash = dup_or_null(r->action_code_hash, &failed);
        p->created_at = r->created_at;
        p->log_id = r->log_id;
        p->log_index = r->log_index;
    }
    if (failed) {
        snprintf(err, errlen, "out of memory");
        rc = OE_ESTORE;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static long long pg_count(oe_store *base, int rejections)
{
    pg_store *s = (pg_store *)base;
    char err[256];
    pthread_mutex_lock(&s->lock);
    long long n = ensure_connected(s, err, sizeof err);
    if (n == 0) {
        PGresult *r = PQexec(s->conn, rejections ? "SELECT count(*) FROM rejections"
                                                 : "SELECT count(*) FROM executions");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else
            n = pg_fail(s, r, "counting rows", err, sizeof err);
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* keys as a PostgreSQL array literal: {"k1","k2"} with " and \ escaped.
 * Returns a malloc'd string or NULL. */
static char *array_literal(const char *const *keys, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += keys[i] ? 2 * strlen(keys[i]) + 3 : 5;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        if (!keys[i]) {
            memcpy(p, "NULL", 4);
            p += 4;
            continue;
        }
        *p++ = '"';
        for (const char *k = keys[i]; *k; k++) {
            if (*k == '"' || *k == '\\')
                *p++ = '\\';
            *p++ = *k;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* Runs a flush statement with one array literal per column (cols[c][i]
 * for row i). Returns the rows inserted, or a failure. */
static long long flush_rows(pg_store *s, int which, const char **cols[], int ncols, size_t n,
                            char *err, size_t errlen)
{
    char *params[EXEC_COLUMNS] = {0};
    int failed = 0;
    for (int c = 0; c < ncols; c++)
        failed |= !(params[c] = array_literal(cols[c], n));
    long long rows = OE_ESTORE;
    if (failed) {
        snprintf(err, errlen, "out of memory");
    } else {
        PGresult *r = PQexecPrepared(s->conn, prepared[which].name, ncols,
                                     (const char *const *)params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            rows = strtoll(PQcmdTuples(r), NULL, 10);
        else
            rows = pg_fail(s, r, prepared[which].name, err, errlen);
        PQclear(r);
    }
    for (int c = 0; c < ncols; c++)
        free(params[c]);
    return rows;
}

/* A row's log_id and log_index as text, for the flush's arrays. */
static void log_entry_text(int64_t log_id, int64_t log_index, char out[2][24])
{
    snprintf(out[0], 24, "%lld", (long long)log_id);
    snprintf(out[1], 24, "%lld", (long long)log_index);
}

/* The batch's checkpoint, after its rows. */
static int flush_checkpoint(pg_store *s, char *err, size_t errlen)
{
    pending_checkpoint *c = &s->checkpoint;
    const char *params[8] = {c->params[0], c->params[1], c->params[2], c->root,
                             c->frontier,  c->leaves,    c->note,      c->params[7]};
    PGresult *r = PQexecPrepared(s->conn, prepared[PS_CHECKPOINT].name, 8, params, NULL, NULL, 0);
    int rc;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = pg_fail(s, r, "storing a checkpoint", err, errlen);
    else
        rc = strtoll(PQcmdTuples(r), NULL, 10) == 1 ? 0 : OE_EDUP_LOG;
    PQclear(r);
    if (rc == OE_EDUP_LOG)
        snprintf(err, errlen,
                 "the receipts log (id %s) already has a checkpoint from size %s: another process "
                 "signs with this key; give each writer a key of its own",
                 c->params[0], c->params[1]);
    return rc;
}

/* Writes the batch's queued rows, before COMMIT. Rows another worker
 * recorded first (a nonce or approval id committed, or committing, since
 * this batch looked) are skipped by ON CONFLICT DO NOTHING; then the batch
 * is run again (OE_ERETRY), and its look-ups find the winners. */
static int flush(pg_store *s, char *err, size_t errlen)
{
    size_t n = s->n_execs > s->n_rejs ? s->n_execs : s->n_rejs;
    if (n == 0)
        return 0;
    const char **cols[EXEC_COLUMNS] = {0};
    char(*num)[32] = malloc(n * sizeof *num);
    char(*log)[2][24] = malloc(n * sizeof *log);
    int failed = !num || !log;
    for (int c = 0; c < EXEC_COLUMNS && !failed; c++)
        failed = !(cols[c] = malloc(n * sizeof **cols));
    int rc = 0;
    if (failed) {
        snprintf(err, errlen, "out of memory");
        rc = OE_ESTORE;
    }
    if (rc == 0 && s->n_execs) {
        for (size_t i = 0; i < s->n_execs; i++) {
            const oe_execution *e = &s->execs[i];
            snprintf(num[i], sizeof num[i], "%.17g", e->created_at);
            log_entry_text(e->log_id, e->log_index, log[i]);
            const char *row[EXEC_COLUMNS] = {e->id,
                                             e->request_hash,
                                             e->receipt,
                                             e->nonce,
                                             e->action,
                                             e->tenant_id,
                                             e->approval_id,
                                             e->result_json,
                                             e->approved ? "t" : "f",
                                             num[i],
                                             e->payload,
                                             e->log_id > 0 ? log[i][0] : NULL,
                                             e->log_id > 0 ? log[i][1] : NULL,
                                             e->action_code_hash[0] ? e->action_code_hash : NULL};
            for (int c = 0; c < EXEC_COLUMNS; c++)
                cols[c][i] = row[c];
        }
        long long rows = flush_rows(s, PS_FLUSH_EXEC, cols, EXEC_COLUMNS, s->n_execs, err, errlen);
        if (rows < 0) {
            rc = (int)rows;
        } else if ((size_t)rows != s->n_execs) {
            snprintf(err, errlen,
                     "%zu of the batch's %zu executions were recorded by another worker first",
                     s->n_execs - (size_t)rows, s->n_execs);
            rc = OE_ERETRY;
        }
    }
    if (rc == 0 && s->n_rejs) {
        for (size_t i = 0; i < s->n_rejs; i++) {
            const pending_rejection *p = &s->rejs[i];
            snprintf(num[i], sizeof num[i], "%.17g", p->created_at);
            log_entry_text(p->log_id, p->log_index, log[i]);
            const char *row[REJ_COLUMNS] = {p->nonce,
                                            p->action,
                                            p->request_hash,
                                            p->error_code,
                                            p->detail,
                                            num[i],
                                            p->payload,
                                            p->log_id > 0 ? log[i][0] : NULL,
                                            p->log_id > 0 ? log[i][1] : NULL,
                                            p->tenant_id,
                                            p->action_code_hash};
            for (int c = 0; c < REJ_COLUMNS; c++)
                cols[c][i] = row[c];
        }
        long long rows = flush_rows(s, PS_FLUSH_REJ, cols, REJ_COLUMNS, s->n_rejs, err, errlen);
        if (rows < 0)
            rc = (int)rows;
    }
    if (rc == 0 && s->checkpoint.queued)
        rc = flush_checkpoint(s, err, errlen);
    for (int c = 0; c < EXEC_COLUMNS; c++)
        free(cols[c]);
    free(num);
    free(log);
    return rc;
}

/* One round trip: which of the batch's nonces and approval ids are
 * recorded. The others are answered "not recorded" by find and
 * approval_used until the transaction ends. */
static int pg_prefetch(oe_store *base, const char *const *nonces, size_t n_nonces,
                       const char *const *approvals, size_t n_approvals, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    char *a = array_literal(nonces, n_nonces);
    char *b = array_literal(approvals, n_approvals);
    key_set_clear(&s->absent_nonces);
    key_set_clear(&s->absent_approvals);
    int failed = !a || !b;
    for (size_t i = 0; i < n_nonces && !failed; i++)
        failed = key_add(&s->absent_nonces, nonces[i], 0) != 0;
    for (size_t i = 0; i < n_approvals && !failed; i++)
        failed = key_add(&s->absent_approvals, approvals[i], 0) != 0;
    if (failed) {
        snprintf(err, errlen, "out of memory");
        rc = OE_ESTORE;
    }
    PGresult *r = NULL;
    if (rc == 0 && s->in_txn) {
        const char *params[] = {a, b};
        r = PQexecParams(s->conn,
                         "SELECT 0, nonce FROM executions WHERE nonce = ANY($1::text[])"
                         " UNION ALL"
                         " SELECT 1, approval_id FROM executions"
                         " WHERE approval_id = ANY($2::text[])",
                         2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = pg_fail(s, r, "looking up a batch", err, errlen);
        } else {
            for (int i = 0; i < PQntuples(r); i++)
                key_gone(PQgetvalue(r, i, 0)[0] == '0' ? &s->absent_nonces : &s->absent_approvals,
                         PQgetvalue(r, i, 1));
        }
    }
    if (rc != 0 || !s->in_txn) {
        key_set_clear(&s->absent_nonces);
        key_set_clear(&s->absent_approvals);
    }
    PQclear(r);
    free(a);
    free(b);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Streams the rows of one query (single-row mode: memory does not grow with
 * the ledger) to row(ctx, result, row number); the lock is held. Returns 0, row's
 * non-zero return, or a failure. */
static int each_row(pg_store *s, const char *sql, const char *param,
                    int (*row)(void *ctx, PGresult *r, int i), void *ctx, const char *what,
                    char *err, size_t errlen)
{
    int rc = ensure_connected(s, err, errlen);
    if (rc != 0)
        return rc;
    const char *params[] = {param};
    if (!PQsendQueryParams(s->conn, sql, param ? 1 : 0, NULL, param ? params : NULL, NULL, NULL, 0))
        return pg_fail(s, NULL, what, err, errlen);
    (void)PQsetSingleRowMode(s->conn); /* refused: the rows come at once, as one result */
    PGresult *r;
    while ((r = PQgetResult(s->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        for (int i = 0; st == PGRES_TUPLES_OK && rc == 0 && i < PQntuples(r); i++)
            rc = row(ctx, r, i);
        if (st == PGRES_SINGLE_TUPLE && rc == 0)
            rc = row(ctx, r, 0);
        else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && rc == 0)
            rc = pg_fail(s, r, what, err, errlen);
        PQclear(r); /* the rest of the results are read and dropped after a stop */
    }
    return rc;
}

typedef struct each_ctx {
    oe_store_execution_fn exec_fn;
    oe_store_rejection_fn rej_fn;
    void *ctx;
} each_ctx;

static const char *value_or_null(PGresult *r, int i, int col)
{
    return PQgetisnull(r, i, col) ? NULL : PQgetvalue(r, i, col);
}

static int execution_row(void *arg, PGresult *r, int i)
{
    each_ctx *c = arg;
    oe_execution e;
    memset(&e, 0, sizeof e);
    snprintf(e.id, sizeof e.id, "%s", PQgetvalue(r, i, 0));
    snprintf(e.request_hash, sizeof e.request_hash, "%s", PQgetvalue(r, i, 1));
    snprintf(e.receipt, sizeof e.receipt, "%s", PQgetvalue(r, i, 2));
    e.nonce = PQgetvalue(r, i, 3);
    e.action = PQgetvalue(r, i, 4);
    e.tenant_id = PQgetvalue(r, i, 5);
    e.approval_id = (char *)value_or_null(r, i, 6);
    e.result_json = PQgetvalue(r, i, 7);
    e.approved = PQgetvalue(r, i, 8)[0] == 't';
    e.created_at = strtod(PQgetvalue(r, i, 9), NULL);
    e.payload = (char *)value_or_null(r, i, 10);
    read_log_entry(r, i, 11, &e.log_id, &e.log_index);
    snprintf(e.action_code_hash, sizeof e.action_code_hash, "%s", PQgetvalue(r, i, 13));
    return c->exec_fn(c->ctx, &e);
}

static int rejection_row(void *arg, PGresult *r, int i)
{
    each_ctx *c = arg;
    oe_rejection j = {
        .nonce = value_or_null(r, i, 0),
        .action = value_or_null(r, i, 1),
        .request_hash = value_or_null(r, i, 2),
        .error_code = PQgetvalue(r, i, 3),
        .detail = PQgetvalue(r, i, 4),
        .created_at = strtod(PQgetvalue(r, i, 5), NULL),
        .payload = value_or_null(r, i, 6),
        .tenant_id = value_or_null(r, i, 9),
        .action_code_hash = value_or_null(r, i, 10),
    };
    read_log_entry(r, i, 7, &j.log_id, &j.log_index);
    return c->rej_fn(c->ctx, &j);
}

static int pg_each_execution(oe_store *base, oe_store_execution_fn fn, void *ctx, char *err,
                             size_t errlen)
{
    pg_store *s = (pg_store *)base;
    each_ctx c = {.exec_fn = fn, .ctx = ctx};
    pthread_mutex_lock(&s->lock);
    int rc = each_row(s, "SELECT " COLUMNS " FROM executions ORDER BY created_at, id", NULL,
                      execution_row, &c, "reading the executions", err, errlen);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_each_rejection(oe_store *base, const char *nonce, oe_store_rejection_fn fn, void *ctx,
                             char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    each_ctx c = {.rej_fn = fn, .ctx = ctx};
    pthread_mutex_lock(&s->lock);
    int rc = each_row(s,
                      nonce ? "SELECT " REJECTION_COLUMNS " FROM rejections WHERE nonce = $1"
                              " ORDER BY seq"
                            : "SELECT " REJECTION_COLUMNS " FROM rejections ORDER BY seq",
                      nonce, rejection_row, &c, "reading the rejections", err, errlen);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int unhex(const char *h, unsigned char *out, size_t n)
{
    if (strlen(h) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* hex into n 32-byte hashes; -1 when it is not exactly that. */
static int unhex_hashes(const char *h, unsigned char (*out)[32], size_t n)
{
    if (strlen(h) != 64 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char part[65];
        memcpy(part, h + 64 * i, 64);
        part[64] = '\0';
        if (unhex(part, out[i], 32) != 0)
            return -1;
    }
    return 0;
}

static int pg_log_open(oe_store *base, const oe_log_key *key, double now, int64_t *log_id,
                       oe_merkle_compact *state, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    char pub[65], when[32];
    oe_hex_encode(key->public_key, 32, pub);
    snprintf(when, sizeof when, "%.17g", now);
    int rc = ensure_connected(s, err, errlen);
    PGresult *r = NULL;
    if (rc == 0) {
        const char *p[4] = {key->origin, pub, key->key_id, when};
        r = PQexecParams(s->conn,
                         "INSERT INTO logs (origin, public_key, key_id, created_at)"
                         " VALUES ($1, decode($2, 'hex'), $3, $4) ON CONFLICT (origin) DO NOTHING",
                         4, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = pg_fail(s, r, "adding the receipts log", err, errlen);
        PQclear(r);
    }
    if (rc == 0) {
        const char *p[1] = {key->origin};
        r = PQexecParams(s->conn,
                         "SELECT l.log_id, encode(l.public_key, 'hex'), c.size,"
                         " encode(c.frontier, 'hex') FROM logs l LEFT JOIN LATERAL"
                         " (SELECT size, frontier FROM checkpoints WHERE log_id = l.log_id"
                         " ORDER BY size DESC LIMIT 1) c ON true WHERE l.origin = $1",
                         1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            rc = pg_fail(s, r, "reading the receipts log", err, errlen);
        } else if (strcmp(PQgetvalue(r, 0, 1), pub) != 0) {
            snprintf(err, errlen,
                     "%.200s: the receipts log %.200s belongs to another key: give this key "
                     "another origin (OPENEXEC_LOG_ORIGIN)",
                     s->shown, key->origin);
            rc = OE_EINVAL;
        } else {
            *log_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            oe_merkle_compact_init(state);
            if (!PQgetisnull(r, 0, 2)) {
                long long size = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
                const char *f = PQgetvalue(r, 0, 3);
                size_t k = size > 0 ? (size_t)__builtin_popcountll((uint64_t)size) : 0;
                int bad = size < 0 || unhex_hashes(f, state->hashes, k) != 0;
                if (bad) {
                    snprintf(err, errlen, "%.200s: the last checkpoint of log %.200s is damaged",
                             s->shown, key->origin);
                    rc = OE_ESTORE;
                } else {
                    state->size = (uint64_t)size;
                }
            }
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Queues the batch's checkpoint for its COMMIT (flush_checkpoint). */
static int pg_insert_checkpoint(oe_store *base, const oe_checkpoint_row *c, char *err,
                                size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    pending_checkpoint *q = &s->checkpoint;
    int rc = 0;
    size_t k = (size_t)__builtin_popcountll(c->state->size);
    size_t n = (size_t)(c->state->size - c->from_size);
    free(q->frontier);
    free(q->leaves);
    free(q->note);
    q->frontier = malloc(64 * k + 1);
    q->leaves = malloc(64 * n + 1);
    q->note = strdup(c->note);
    if (!s->in_txn) {
        snprintf(err, errlen, "a checkpoint is recorded only inside a transaction");
        rc = OE_ESTORE;
    } else if (!q->frontier || !q->leaves || !q->note) {
        snprintf(err, errlen, "out of memory");
        rc = OE_ESTORE;
    } else {
        q->frontier[0] = '\0';
        for (size_t i = 0; i < k; i++)
            oe_hex_encode(c->state->hashes[i], 32, q->frontier + 64 * i);
        q->leaves[0] = '\0';
        for (size_t i = 0; i < n; i++)
            oe_hex_encode(c->leaves[i], 32, q->leaves + 64 * i);
        oe_hex_encode(c->root, 32, q->root);
        snprintf(q->params[0], sizeof q->params[0], "%lld", (long long)c->log_id);
        snprintf(q->params[1], sizeof q->params[1], "%llu", (unsigned long long)c->from_size);
        snprintf(q->params[2], sizeof q->params[2], "%llu", (unsigned long long)c->state->size);
        snprintf(q->params[7], sizeof q->params[7], "%.17g", c->created_at);
        q->queued = 1;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_log_batch(oe_store *base, int64_t log_id, uint64_t index, oe_log_batch *out,
                        char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    char id[32], at[32];
    snprintf(id, sizeof id, "%lld", (long long)log_id);
    snprintf(at, sizeof at, "%llu", (unsigned long long)index);
    const char *p[2] = {id, at};
    int rc = ensure_connected(s, err, errlen);
    PGresult *r = NULL;
    if (rc == 0) {
        r = PQexecParams(s->conn,
                         "SELECT c.from_size, c.size, c.note, encode(c.leaves, 'hex'), l.origin,"
                         " encode(f.frontier, 'hex') FROM checkpoints c"
                         " JOIN logs l ON l.log_id = c.log_id"
                         " LEFT JOIN checkpoints f ON f.log_id = c.log_id AND f.size = c.from_size"
                         " WHERE c.log_id = $1 AND c.size > $2 ORDER BY c.size LIMIT 1",
                         2, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = pg_fail(s, r, "reading a checkpoint", err, errlen);
    }
    if (rc == 0 && PQntuples(r) == 1) {
        long long from = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        long long size = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        size_t n = size > from && from >= 0 ? (size_t)(size - from) : 0;
        size_t k = from > 0 ? (size_t)__builtin_popcountll((uint64_t)from) : 0;
        if (n == 0 || (from > 0 && PQgetisnull(r, 0, 5))) {
            snprintf(err, errlen, "%.200s: checkpoint %lld of log %lld is damaged", s->shown, size,
                     (long long)log_id);
            rc = OE_ESTORE;
        } else if (!(out->note = strdup(PQgetvalue(r, 0, 2))) ||
                   !(out->leaves = malloc(n * sizeof *out->leaves))) {
            snprintf(err, errlen, "out of memory");
            rc = OE_ENOMEM;
        } else if (unhex_hashes(PQgetvalue(r, 0, 3), out->leaves, n) != 0 ||
                   (k && unhex_hashes(PQgetvalue(r, 0, 5), out->base.hashes, k) != 0)) {
            snprintf(err, errlen, "%.200s: checkpoint %lld of log %lld is damaged", s->shown, size,
                     (long long)log_id);
            rc = OE_ESTORE;
        } else {
            snprintf(out->origin, sizeof out->origin, "%s", PQgetvalue(r, 0, 4));
            out->size = (uint64_t)size;
            out->base.size = (uint64_t)from;
            rc = 1;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0 && rc != 1)
        oe_log_batch_clear(out);
    return rc;
}

static int pg_log_checkpoint(oe_store *base, const char *origin, char **note, char *err,
                             size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = ensure_connected(s, err, errlen);
    if (rc == 0) {
        const char *p[1] = {origin};
        PGresult *r = PQexecParams(s->conn,
                                   "SELECT c.note FROM checkpoints c JOIN logs l"
                                   " ON l.log_id = c.log_id WHERE l.origin = $1"
                                   " ORDER BY c.size DESC LIMIT 1",
                                   1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = pg_fail(s, r, "reading a checkpoint", err, errlen);
        } else if (PQntuples(r) == 1) {
            rc = (*note = strdup(PQgetvalue(r, 0, 0))) ? 1 : OE_ENOMEM;
            if (rc == OE_ENOMEM)
                snprintf(err, errlen, "out of memory");
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Reads checkpoint rows (each_row) into views for fn. */
typedef struct checkpoint_sink {
    oe_store_checkpoint_fn fn;
    void *ctx;
    pg_store *s;
    char *err;
    size_t errlen;
} checkpoint_sink;

static int checkpoint_row(void *arg, PGresult *r, int i)
{
    checkpoint_sink *k = arg;
    long long from = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    long long size = strtoll(PQgetvalue(r, i, 4), NULL, 10);
    size_t n = size >= from && from >= 0 ? (size_t)(size - from) : 0;
    size_t f = size > 0 ? (size_t)__builtin_popcountll((uint64_t)size) : 0;
    unsigned char pub[32], root[32], (*leaves)[32] = malloc((n ? n : 1) * 32);
    unsigned char frontier[64][32];
    int rc;
    if (!leaves) {
        snprintf(k->err, k->errlen, "out of memory");
        return OE_ENOMEM;
    }
    if (size < from || from < 0 || unhex(PQgetvalue(r, i, 2), pub, 32) != 0 ||
        unhex(PQgetvalue(r, i, 5), root, 32) != 0 ||
        unhex_hashes(PQgetvalue(r, i, 6), leaves, n) != 0 ||
        unhex_hashes(PQgetvalue(r, i, 7), frontier, f) != 0) {
        snprintf(k->err, k->errlen, "%.200s: checkpoint %lld of log %s is damaged", k->s->shown,
                 size, PQgetvalue(r, i, 0));
        rc = OE_ESTORE;
    } else {
        oe_checkpoint_view v = {
            .log_id = strtoll(PQgetvalue(r, i, 0), NULL, 10),
            .origin = PQgetvalue(r, i, 1),
            .public_key = pub,
            .from_size = (uint64_t)from,
            .size = (uint64_t)size,
            .root = root,
            .leaves = (const unsigned char(*)[32])leaves,
            .frontier = (const unsigned char(*)[32])frontier,
            .note = PQgetvalue(r, i, 8),
            .created_at = strtod(PQgetvalue(r, i, 9), NULL),
        };
        rc = k->fn(k->ctx, &v);
    }
    free(leaves);
    return rc;
}

#define PG_CHECKPOINT_COLUMNS                                                                      \
    "c.log_id, l.origin, encode(l.public_key, 'hex'), c.from_size, c.size,"                        \
    " encode(c.root, 'hex'), encode(c.leaves, 'hex'), encode(c.frontier, 'hex'), c.note,"          \
    " c.created_at"

static int pg_each_checkpoint(oe_store *base, const char *origin, oe_store_checkpoint_fn fn,
                              void *ctx, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    checkpoint_sink k = {.fn = fn, .ctx = ctx, .s = s, .err = err, .errlen = errlen};
    pthread_mutex_lock(&s->lock);
    int rc = each_row(s,
                      origin ? "SELECT " PG_CHECKPOINT_COLUMNS " FROM checkpoints c JOIN logs l"
                               " ON l.log_id = c.log_id WHERE l.origin = $1 ORDER BY c.size"
                             : "SELECT " PG_CHECKPOINT_COLUMNS " FROM checkpoints c JOIN logs l"
                               " ON l.log_id = c.log_id ORDER BY c.log_id, c.size",
                      origin, checkpoint_row, &k, "reading the checkpoints", err, errlen);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* The rows of a log (store.h oe_store_log_rows_open): executions and
 * rejections in one shape, kind first (0 or 1); the payload is left out
 * (it is no part of a leaf, and may be a megabyte). */
#define PG_LOG_ROW_EXECUTION                                                                       \
    "SELECT 0 AS kind, id, request_hash, receipt, nonce, action, tenant_id, approval_id,"          \
    " result_json, approved, created_at, log_id, log_index, NULL::text AS error_code,"             \
    " NULL::text AS detail, action_code_hash FROM executions AS t WHERE "
#define PG_LOG_ROW_REJECTION                                                                       \
    "SELECT 1, NULL, request_hash, NULL, nonce, action, tenant_id, NULL, NULL, false,"             \
    " created_at, log_id, log_index, error_code, detail, action_code_hash FROM rejections AS t"    \
    " WHERE "
#define PG_LOG_ROWS_SQL(where) PG_LOG_ROW_EXECUTION where " UNION ALL " PG_LOG_ROW_REJECTION where

static int pg_log_rows_open(oe_store *base, int64_t log_id, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    const char *sql =
        log_id > 0 ? PG_LOG_ROWS_SQL("t.log_id = $1") " ORDER BY log_index NULLS FIRST"
                   : PG_LOG_ROWS_SQL("(t.log_id IS NULL OR NOT EXISTS (SELECT 1 FROM checkpoints c"
                                     " WHERE c.log_id = t.log_id))");
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)log_id);
    const char *params[] = {id};
    pthread_mutex_lock(&s->lock);
    int rc = ensure_connected(s, err, errlen);
    if (rc == 0 && !PQsendQueryParams(s->conn, sql, log_id > 0 ? 1 : 0, NULL,
                                      log_id > 0 ? params : NULL, NULL, NULL, 0))
        rc = pg_fail(s, NULL, "reading the rows of a log", err, errlen);
    if (rc != 0) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    (void)PQsetSingleRowMode(s->conn); /* refused: the rows come at once, as one result */
    s->rows_open = 1;
    s->rows_done = 0;
    s->rows = NULL;
    s->rows_at = 0;
    return 0; /* the lock is held until the close */
}

/* Reads and drops what is left of the open read's results. */
static void pg_rows_drain(pg_store *s)
{
    PGresult *r;
    while (!s->rows_done && (r = PQgetResult(s->conn)) != NULL)
        PQclear(r);
    s->rows_done = 1;
}

/* Column col of row i into a field of its own: 1 when it does not fit. */
static int pg_read_fixed(char *dst, size_t size, PGresult *r, int i, int col)
{
    const char *v = PQgetvalue(r, i, col);
    snprintf(dst, size, "%s", v);
    return strlen(v) >= size;
}

static int pg_log_rows_next(oe_store *base, oe_log_row *row, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    while (!s->rows || s->rows_at >= PQntuples(s->rows)) {
        PQclear(s->rows);
        s->rows = NULL;
        if (s->rows_done)
            return 0;
        PGresult *r = PQgetResult(s->conn);
        if (!r) {
            s->rows_done = 1;
            return 0;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK) {
            int rc = pg_fail(s, r, "reading the rows of a log", err, errlen);
            PQclear(r);
            pg_rows_drain(s);
            return rc;
        }
        s->rows = r;
        s->rows_at = 0;
    }
    PGresult *r = s->rows;
    int i = s->rows_at++, bad = 0;
    memset(row, 0, sizeof *row);
    row->rejected = PQgetvalue(r, i, 0)[0] == '1';
    double created_at = strtod(PQgetvalue(r, i, 10), NULL);
    int64_t log_id = PQgetisnull(r, i, 11) ? 0 : strtoll(PQgetvalue(r, i, 11), NULL, 10);
    int64_t log_index = PQgetisnull(r, i, 12) ? -1 : strtoll(PQgetvalue(r, i, 12), NULL, 10);
    if (!row->rejected) {
        oe_execution *e = &row->execution;
        bad |= pg_read_fixed(e->id, sizeof e->id, r, i, 1);
        bad |= pg_read_fixed(e->request_hash, sizeof e->request_hash, r, i, 2);
        bad |= pg_read_fixed(e->receipt, sizeof e->receipt, r, i, 3);
        e->nonce = PQgetvalue(r, i, 4);
        e->action = PQgetvalue(r, i, 5);
        e->tenant_id = PQgetvalue(r, i, 6);
        e->approval_id = (char *)value_or_null(r, i, 7);
        e->result_json = PQgetvalue(r, i, 8);
        e->approved = PQgetvalue(r, i, 9)[0] == 't';
        bad |= pg_read_fixed(e->action_code_hash, sizeof e->action_code_hash, r, i, 15);
        e->created_at = created_at;
        e->log_id = log_id;
        e->log_index = log_index;
    } else {
        oe_rejection *j = &row->rejection;
        j->request_hash = value_or_null(r, i, 2);
        j->nonce = value_or_null(r, i, 4);
        j->action = value_or_null(r, i, 5);
        j->tenant_id = value_or_null(r, i, 6);
        j->error_code = PQgetvalue(r, i, 13);
        j->detail = PQgetvalue(r, i, 14);
        j->action_code_hash = value_or_null(r, i, 15);
        j->created_at = created_at;
        j->log_id = log_id;
        j->log_index = log_index;
    }
    row->unreadable = bad;
    return 1;
}

static void pg_log_rows_close(oe_store *base)
{
    pg_store *s = (pg_store *)base;
    if (!s->rows_open)
        return;
    PQclear(s->rows);
    s->rows = NULL;
    pg_rows_drain(s);
    s->rows_open = 0;
    pthread_mutex_unlock(&s->lock);
}

static const oe_store_ops pg_ops = {
    .log_rows_open = pg_log_rows_open,
    .log_rows_next = pg_log_rows_next,
    .log_rows_close = pg_log_rows_close,
    .each_checkpoint = pg_each_checkpoint,
    .log_checkpoint = pg_log_checkpoint,
    .log_batch = pg_log_batch,
    .log_open = pg_log_open,
    .insert_checkpoint = pg_insert_checkpoint,
    .name = "postgresql",
    .free = pg_free,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .find = pg_find,
    .approval_used = pg_approval_used,
    .insert_execution = pg_insert_execution,
    .insert_rejection = pg_insert_rejection,
    .count = pg_count,
    .prefetch = pg_prefetch,
    .each_execution = pg_each_execution,
    .each_rejection = pg_each_rejection,
};
