/* The SQLite store: executions (unique nonce, unique approval id) and
 * rejected attempts. The database, not the code, is the last line against
 * double execution: both uniqueness rules are constraints.
 *
 * One writer connection (the engine's) and any number of read-only ones
 * (HTTP lookups). Each connection is safe to share between threads: calls
 * are serialised by a mutex inside the store.
 */
#ifndef OE_STORE_H
#define OE_STORE_H

#include <stddef.h>

typedef struct oe_store oe_store;

/* A stored execution. Strings are owned by the record. */
typedef struct oe_execution {
    char id[37];
    char request_hash[65];
    char receipt[65];
    char *nonce;
    char *action;
    char *tenant_id;
    char *approval_id; /* NULL in demo mode */
    char *result_json; /* json.dumps(result, sort_keys=True) */
    int approved;
    double created_at; /* seconds since the epoch */
} oe_execution;

/* Releases the record's strings and zeroes it. */
void oe_execution_clear(oe_execution *e);

/* Results of oe_store_insert_execution besides 0 and -1. */
#define OE_STORE_DUP_NONCE (-2)
#define OE_STORE_DUP_APPROVAL (-3)

/* Durability of commits: FULL survives power loss, NORMAL survives a crash
 * of the process (kill -9) but may lose the last commits on power loss. */
typedef enum oe_store_sync { OE_STORE_SYNC_FULL, OE_STORE_SYNC_NORMAL } oe_store_sync;

/* Opens (and for a writer creates or migrates) the database at path.
 * readonly opens an existing database for lookups only. Returns 0 or -1
 * with a reason in err. */
int oe_store_new(const char *path, int readonly, oe_store_sync sync, oe_store **out, char *err,
                 size_t errlen);
void oe_store_free(oe_store *s);

/* Transactions, for one batch of outcomes. */
int oe_store_begin(oe_store *s, char *err, size_t errlen);
int oe_store_commit(oe_store *s, char *err, size_t errlen);
void oe_store_rollback(oe_store *s);

/* Looks up an execution by nonce or by id. Returns 1 and fills e when
 * found, 0 when not, -1 on error. */
int oe_store_find_by_nonce(oe_store *s, const char *nonce, oe_execution *e, char *err,
                           size_t errlen);
int oe_store_find_by_id(oe_store *s, const char *id, oe_execution *e, char *err, size_t errlen);

/* 1 when an execution already used this approval id, 0 when not, -1 on
 * error. */
int oe_store_approval_used(oe_store *s, const char *approval_id, char *err, size_t errlen);

/* Inserts an execution. Returns 0, OE_STORE_DUP_NONCE, OE_STORE_DUP_APPROVAL
 * or -1 with a reason in err. */
int oe_store_insert_execution(oe_store *s, const oe_execution *e, char *err, size_t errlen);

/* Records a rejected attempt. nonce, action and request_hash may be NULL. */
int oe_store_insert_rejection(oe_store *s, const char *nonce, const char *action,
                              const char *request_hash, const char *error_code, const char *detail,
                              double created_at, char *err, size_t errlen);

/* Row counts, for tests and metrics. Returns -1 on error. */
long long oe_store_count_executions(oe_store *s);
long long oe_store_count_rejections(oe_store *s);

#endif
