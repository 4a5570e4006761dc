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
 * breaks by aborting one: OE_STORE_RETRY, the engine runs it again.
 *
 * A lost connection is reconnected on the next call; until then calls
 * return OE_STORE_UNAVAILABLE. A connection lost during COMMIT is resolved
 * by asking the server what became of the transaction (txid_status of the
 * id read at BEGIN), never by guessing.
 *
 * One connection per store, guarded by its own mutex. Statements are
 * prepared once per connection.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/clock.h"
#include "ledger.h"

/* Schema steps from version 0; schema_migrations records each one. Steps
 * are never edited once released: a change is a new step. */
static const char *const schema_steps[OE_SCHEMA_VERSION] = {
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
};

/* Serialises migrations of one database by concurrent writers. */
#define MIGRATION_LOCK "7310585448129816419" /* "openexec" as a 64-bit number */

#define COLUMNS                                                                                    \
    "id, request_hash, receipt, nonce, action, tenant_id, approval_id, result_json, approved,"    \
    " created_at"

enum { PS_BY_NONCE, PS_BY_ID, PS_APPROVAL_USED, PS_INSERT_EXEC, PS_INSERT_REJ, PS_COUNT };

static const struct {
    const char *name, *sql;
    int nparams;
} prepared[PS_COUNT] = {
    [PS_BY_NONCE] = {"oe_by_nonce", "SELECT " COLUMNS " FROM executions WHERE nonce = $1", 1},
    [PS_BY_ID] = {"oe_by_id", "SELECT " COLUMNS " FROM executions WHERE id = $1", 1},
    [PS_APPROVAL_USED] = {"oe_approval_used", "SELECT 1 FROM executions WHERE approval_id = $1",
                          1},
    [PS_INSERT_EXEC] = {"oe_insert_exec",
                        "INSERT INTO executions (" COLUMNS ") VALUES"
                        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                        10},
    [PS_INSERT_REJ] = {"oe_insert_rej",
                       "INSERT INTO rejections (nonce, action, request_hash, error_code, detail,"
                       " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                       6},
};

typedef struct pg_store {
    oe_store base;
    PGconn *conn;
    int readonly;
    int prepared; /* the statements exist on this connection */
    int in_txn;   /* BEGIN done, COMMIT/ROLLBACK not yet */
    char xid[32]; /* the open transaction's id (txid_current) */
    char *url;    /* as given, for reconnecting */
    char shown[512];
    pthread_mutex_t lock;
} pg_store;

/* libpq's messages end with a newline; one line reads better in logs. */
static void copy_message(char *dst, size_t len, const char *what, const char *msg)
{
    snprintf(dst, len, "%s: %s", what, msg && *msg ? msg : "no reason given");
    for (char *p = dst; *p; p++)
        if (*p == '\n')
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
        return OE_STORE_UNAVAILABLE;
    if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
        return OE_STORE_RETRY;
    /* 08 connection, 53 insufficient resources, 57 operator intervention
     * (shutdown, statement timeout), 58 system error. */
    if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
                  strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0))
        return OE_STORE_UNAVAILABLE;
    return OE_STORE_ERROR;
}

/* Runs sql (no parameters) and checks its result status. */
static int exec_simple(pg_store *s, const char *sql, ExecStatusType want, char *err, size_t errlen)
{
    PGresult *r = PQexec(s->conn, sql);
    int rc = PQresultStatus(r) == want ? 0 : pg_fail(s, r, sql, err, errlen);
    PQclear(r);
    return rc;
}

static PGconn *connect_to(const pg_store *s)
{
    /* Ours first: the URL's own parameters override them. A hung server
     * or a worker stopped mid-transaction must not hold the others for
     * ever: statements give up after 30 s, idle transactions after 60 s. */
    const char *options =
        s->readonly ? "-c statement_timeout=30000 -c default_transaction_read_only=on"
                    : "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000";
    const char *keys[] = {"connect_timeout",    "application_name", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                          "options",            "dbname",           NULL};
    const char *values[] = {"5", "openexec", "5", "2", "3", "15000", options, s->url, NULL};
    return PQconnectdbParams(keys, values, 1);
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
    return OE_STORE_UNAVAILABLE;
}

/* Makes sure the connection is up and the statements prepared; the lock is
 * held. A connection lost inside a transaction loses that transaction (the
 * server rolls it back): report that rather than reconnect under it. */
static int ensure_connected(pg_store *s, char *err, size_t errlen)
{
    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        if (s->in_txn) {
            snprintf(err, errlen, "%.200s: connection lost during a transaction", s->shown);
            return OE_STORE_UNAVAILABLE;
        }
        int rc = connect_now(s, err, errlen);
        if (rc != 0)
            return rc;
    }
    if (s->prepared)
        return 0;
    for (int i = 0; i < PS_COUNT; i++) {
        PGresult *r = PQprepare(s->conn, prepared[i].name, prepared[i].sql, prepared[i].nparams,
                                NULL);
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

/* Reads the schema version; 0 when there is no version table. The lock is
 * held. */
static int read_version(pg_store *s, int *version, char *err, size_t errlen)
{
    PGresult *r = PQexec(s->conn, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = pg_fail(s, r, "reading the schema version", err, errlen);
        PQclear(r);
        return rc;
    }
    int exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    *version = 0;
    if (!exists)
        return 0;
    r = PQexec(s->conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = pg_fail(s, r, "reading the schema version", err, errlen);
        PQclear(r);
        return rc;
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* Creates or upgrades the schema in one transaction, under an advisory
 * lock so that workers starting together take turns. */
static int migrate(pg_store *s, char *err, size_t errlen)
{
    int version = 0;
    if (s->readonly) {
        int rc = read_version(s, &version, err, errlen);
        if (rc == 0 && version != OE_SCHEMA_VERSION) {
            snprintf(err, errlen, "%.200s: ledger schema version %d is not %d (this binary's)%s",
                     s->shown, version, OE_SCHEMA_VERSION,
                     version < OE_SCHEMA_VERSION ? ": start a writer first" : "");
            rc = OE_STORE_ERROR;
        }
        return rc;
    }
    int rc = exec_simple(s, "BEGIN", PGRES_COMMAND_OK, err, errlen);
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
    if (rc == 0 && version > OE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "%.200s: ledger schema version %d is newer than this binary's (%d): run a newer "
                 "openexec",
                 s->shown, version, OE_SCHEMA_VERSION);
        rc = OE_STORE_ERROR;
    }
    for (; rc == 0 && version < OE_SCHEMA_VERSION; version++) {
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

static void pg_free(oe_store *base)
{
    pg_store *s = (pg_store *)base;
    if (s->conn)
        PQfinish(s->conn);
    pthread_mutex_destroy(&s->lock);
    free(s->url);
    free(s);
}

static const oe_store_ops pg_ops;

int oe_pg_store_new(const char *url, int readonly, oe_store **out, char *err, size_t errlen)
{
    pg_store *s = calloc(1, sizeof *s);
    if (!s || !(s->url = strdup(url))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->base.ops = &pg_ops;
    s->base.shared = 1;
    s->readonly = readonly;
    pthread_mutex_init(&s->lock, NULL);
    oe_ledger_mask_url(url, s->shown, sizeof s->shown);
    char why[512];
    int rc = connect_now(s, why, sizeof why);
    if (rc == 0)
        rc = migrate(s, why, sizeof why);
    if (rc == 0)
        rc = ensure_connected(s, why, sizeof why);
    if (rc != 0) {
        snprintf(err, errlen, "%s", why);
        pg_free(&s->base);
        return -1;
    }
    *out = &s->base;
    return 0;
}

static int pg_begin(oe_store *base, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    s->in_txn = 0;
    int rc = ensure_connected(s, err, errlen);
    if (rc == 0) {
        PGresult *r = PQexec(s->conn, "BEGIN ISOLATION LEVEL READ COMMITTED;"
                                      " SELECT txid_current()::text");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            snprintf(s->xid, sizeof s->xid, "%s", PQgetvalue(r, 0, 0));
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

/* The connection went during COMMIT: reconnect and ask the server what
 * became of the transaction. Committed: success. Aborted: nothing was
 * recorded (OE_STORE_UNAVAILABLE: run the batch again). Still in progress
 * (the server has not noticed the lost connection yet): ask again. No
 * answer within the time: OE_STORE_UNAVAILABLE, and the batch run again
 * later reads its own rows back if they were committed. */
static int resolve_commit(pg_store *s, char *err, size_t errlen)
{
    char why[512];
    s->in_txn = 0;
    for (double deadline = oe_monotonic() + 20;;) {
        if (ensure_connected(s, why, sizeof why) == 0) {
            const char *params[] = {s->xid};
            PGresult *r = PQexecParams(s->conn, "SELECT txid_status($1::bigint)", 1, NULL,
                                       params, NULL, NULL, 0);
            const char *status = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                                         !PQgetisnull(r, 0, 0)
                                     ? PQgetvalue(r, 0, 0)
                                     : "";
            int committed = strcmp(status, "committed") == 0;
            int aborted = strcmp(status, "aborted") == 0;
            if (!committed && !aborted && PQresultStatus(r) != PGRES_TUPLES_OK)
                copy_message(why, sizeof why, "reading the transaction status",
                             PQresultErrorMessage(r));
            else
                snprintf(why, sizeof why, "transaction %s is %s", s->xid,
                         *status ? status : "unknown");
            PQclear(r);
            if (committed)
                return 0;
            if (aborted) {
                snprintf(err, errlen,
                         "%s: the connection was lost during COMMIT and the transaction was "
                         "rolled back; nothing of the batch is recorded",
                         s->shown);
                return OE_STORE_UNAVAILABLE;
            }
        }
        if (oe_monotonic() > deadline)
            break;
        oe_sleep_ms(500);
    }
    snprintf(err, errlen,
             "%s: the connection was lost during COMMIT and its outcome cannot be read yet (%s)",
             s->shown, why);
    return OE_STORE_UNAVAILABLE;
}

static int pg_commit(oe_store *base, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc;
    PGresult *r = PQexec(s->conn, "COMMIT");
    if (PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0) {
        s->in_txn = 0;
        rc = 0;
    } else if (PQstatus(s->conn) != CONNECTION_OK) {
        rc = resolve_commit(s, err, errlen);
    } else {
        /* A COMMIT of a failed transaction answers ROLLBACK. */
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? OE_STORE_ERROR
                                                   : pg_fail(s, r, "COMMIT", err, errlen);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            snprintf(err, errlen, "%.200s: the transaction was rolled back by the server", s->shown);
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
        *rc = OE_STORE_UNAVAILABLE;
        return NULL;
    }
    PGresult *r = PQexecPrepared(s->conn, prepared[which].name, prepared[which].nparams, params,
                                 NULL, NULL, 0);
    if (PQresultStatus(r) == (ExecStatusType)want)
        return r;
    *rc = pg_fail(s, r, prepared[which].sql, err, errlen);
    PQclear(r);
    return NULL;
}

static char *dup_value(PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : strdup(PQgetvalue(r, 0, col));
}

static int pg_find(oe_store *base, int by_id, const char *key, oe_execution *e, char *err,
                   size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
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
        rc = 1;
        if (!e->nonce || !e->action || !e->tenant_id || !e->result_json ||
            (!PQgetisnull(r, 0, 6) && !e->approval_id)) {
            oe_execution_clear(e);
            snprintf(err, errlen, "out of memory reading an execution");
            rc = OE_STORE_ERROR;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_approval_used(oe_store *base, const char *approval_id, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    const char *params[] = {approval_id};
    int rc;
    PGresult *r = run(s, PS_APPROVAL_USED, params, PGRES_TUPLES_OK, &rc, err, errlen);
    if (r)
        rc = PQntuples(r) > 0;
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_insert_execution(oe_store *base, const oe_execution *e, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    char created[40];
    snprintf(created, sizeof created, "%.17g", e->created_at);
    const char *params[] = {e->id,          e->request_hash,
                            e->receipt,     e->nonce,
                            e->action,      e->tenant_id ? e->tenant_id : "",
                            e->approval_id, e->result_json,
                            e->approved ? "t" : "f", created};
    int rc;
    PGresult *r = run(s, PS_INSERT_EXEC, params, PGRES_COMMAND_OK, &rc, err, errlen);
    if (r && strcmp(PQcmdTuples(r), "1") != 0) {
        /* Nothing inserted: another execution holds the nonce or the
         * approval (committed now, or the insert would still wait). */
        PQclear(r);
        const char *key[] = {e->nonce};
        r = run(s, PS_BY_NONCE, key, PGRES_TUPLES_OK, &rc, err, errlen);
        if (r && PQntuples(r) > 0) {
            rc = OE_STORE_DUP_NONCE;
        } else if (r && e->approval_id) {
            rc = OE_STORE_DUP_APPROVAL;
        } else if (r) {
            snprintf(err, errlen, "%.200s: execution %s conflicts with a row that cannot be read",
                     s->shown, e->id);
            rc = OE_STORE_ERROR;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_insert_rejection(oe_store *base, const char *nonce, const char *action,
                               const char *request_hash, const char *error_code,
                               const char *detail, double created_at, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->lock);
    char created[40];
    snprintf(created, sizeof created, "%.17g", created_at);
    const char *params[] = {nonce, action, request_hash, error_code, detail, created};
    int rc;
    PGresult *r = run(s, PS_INSERT_REJ, params, PGRES_COMMAND_OK, &rc, err, errlen);
    PQclear(r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static long long pg_count(oe_store *base, int rejections)
{
    pg_store *s = (pg_store *)base;
    char err[256];
    pthread_mutex_lock(&s->lock);
    long long n = -1;
    if (ensure_connected(s, err, sizeof err) == 0) {
        PGresult *r = PQexec(s->conn, rejections ? "SELECT count(*) FROM rejections"
                                                 : "SELECT count(*) FROM executions");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

static const oe_store_ops pg_ops = {
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
};
