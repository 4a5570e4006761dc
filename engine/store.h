/* The ledger interface: what the engine asks of a ledger (look up by nonce
 * or id, is this approval used, record a batch of outcomes atomically,
 * record rejections). Its backends live in ledger/: SQLite (one file, one
 * host) and PostgreSQL (one database shared by a whole group). The
 * database, not the code, is the last line against double execution: nonce
 * and approval id are unique constraints in both.
 *
 * A store is one connection. Each is safe to share between threads: calls
 * are serialised by a mutex inside the backend. The engine's writer and the
 * admin server's reader are separate stores.
 *
 * Results: 0 (or a count, or 1/0 for found/absent) on success; negative
 * codes below otherwise, with a reason in err.
 */
#ifndef OE_STORE_H
#define OE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "merkle.h"
#include "status.h"

typedef struct oe_store oe_store;

/* A text's ledger key: the first 8 bytes of its SHA-256, as a signed 64-bit
 * integer. A backend that indexes compact keys instead of texts (SQLite)
 * finds a nonce, id or approval id through it; keys are not unique (two
 * texts may share one), so a look-up compares the text too. A hash an
 * attacker cannot aim: a hostile producer cannot pile its nonces onto one
 * key. The engine computes a request's keys once and passes them to its
 * look-ups and its insert; no backend hashes a text again. */
typedef int64_t oe_ledger_key;

oe_ledger_key oe_ledger_key_of(const char *text, size_t len);

/* A stored execution. Strings are owned by the record. */
typedef struct oe_execution {
    char id[37];
    char request_hash[65];
    char receipt[65];
    /* The Lua action's code hash (lowercase hex SHA-256 of its file, 64
     * digits) when a Lua action ran; "" for a built-in and older rows. */
    char action_code_hash[65];
    char *nonce;
    char *action;
    char *tenant_id;
    char *approval_id; /* NULL in demo mode */
    char *result_json; /* json.dumps(result, sort_keys=True) */
    char *payload;     /* the request's payload, canonical (docs/protocol.md §3), cut past
                          OE_LEDGER_PAYLOAD_MAX_BYTES (oe_cut); NULL when not
                          kept (OPENEXEC_LEDGER_PAYLOADS=hash, older rows) */
    int approved;
    double created_at; /* seconds since the epoch */
    /* The keys of nonce, id and approval_id (oe_ledger_key_of; 0 when
     * approval_id is NULL): set by whoever inserts the record
     * (oe_execution_set_keys, or the engine from keys it already has);
     * not read back by look-ups. */
    oe_ledger_key nonce_key, id_key, approval_key;
    /* The row's leaf in its writer's receipts log (docs/protocol.md §8): log_id > 0
     * and its index, or log_id 0 for a row written unsigned. */
    int64_t log_id, log_index;
} oe_execution;

/* Computes the record's three keys from its texts. */
void oe_execution_set_keys(oe_execution *e);

/* Releases the record's strings and zeroes it. */
void oe_execution_clear(oe_execution *e);

/* Copies src into dst with strings of its own. Returns OE_OK, or OE_ENOMEM
 * when memory ran out (dst is then cleared). */
int oe_execution_copy(oe_execution *dst, const oe_execution *src);

/* A rejected attempt as recorded. nonce, action, request_hash and payload
 * may be NULL (a request that could not be read; payload as in
 * oe_execution). */
typedef struct oe_rejection {
    const char *nonce;
    const char *action;
    const char *request_hash;
    const char *error_code;
    const char *detail;
    const char *payload;
    double created_at;
    const char *tenant_id;     /* the writer's tenant (NULL in rows written unsigned) */
    int64_t log_id, log_index; /* as in oe_execution */
    /* The code hash of the Lua action that ran and failed (action_failed);
     * NULL otherwise. */
    const char *action_code_hash;
} oe_rejection;

/* Longest payload text a ledger row keeps whole: the largest request
 * (OE_REQUEST_MAX_BYTES); a canonical payload can be longer than its
 * request (escaped characters), and is then cut (engine/ids.h oe_cut). */
#define OE_LEDGER_PAYLOAD_MAX_BYTES ((size_t)1 << 20)

/* Longest payload text a rejection's row keeps whole: anyone who can send
 * a request can have it rejected, without an approval, so these rows stay
 * small; a longer payload is cut the same way. */
#define OE_LEDGER_REJECTED_PAYLOAD_MAX_BYTES ((size_t)4096)

/* Called for each record of an iteration (oe_store_each_*). The record and
 * its strings are borrowed for the call only (never oe_execution_clear
 * it). A non-zero return stops the iteration and is returned by it. */
typedef int (*oe_store_execution_fn)(void *ctx, const oe_execution *e);
typedef int (*oe_store_rejection_fn)(void *ctx, const oe_rejection *r);

/* Failures are oe_rc codes (status.h): OE_ESTORE is permanent as far as
 * the store can tell (a damaged or replaced file, a refused statement);
 * OE_ERETRY says the database aborted the transaction for a transient
 * reason (deadlock, serialization): roll back and run the same batch again
 * at once; OE_EUNAVAIL says the database cannot be reached (or the outcome
 * of a commit could not be read back yet): nothing of the transaction is
 * recorded, try the batch again later. oe_store_insert_execution also
 * returns OE_EDUP_NONCE or OE_EDUP_APPROVAL. */

/* Durability of commits: FULL survives power loss, NORMAL survives a crash
 * of the process (kill -9) but may lose the last commits on power loss. */
typedef enum oe_store_sync { OE_STORE_SYNC_FULL, OE_STORE_SYNC_NORMAL } oe_store_sync;

/* A writer's receipts log as the ledger lists it: its origin (docs/protocol.md §8)
 * and the Ed25519 key that signs its checkpoints. */
typedef struct oe_log_key {
    const char *origin;
    unsigned char public_key[32];
    char key_id[65]; /* lowercase hex SHA-256 of public_key */
} oe_log_key;

/* One signed checkpoint: the log's tree grew from from_size to
 * state->size leaves in the batch that stores it. */
typedef struct oe_checkpoint_row {
    int64_t log_id;
    uint64_t from_size;
    const oe_merkle_compact *state; /* the tree at its size */
    /* The leaf hashes of the batch, entries from_size to state->size:
     * with the tree at from_size they prove any entry of the batch later
     * (a replay's receipt), and let an audit find a changed row. */
    const unsigned char (*leaves)[32];
    unsigned char root[32];
    const char *note; /* the C2SP signed note */
    double created_at;
} oe_checkpoint_row;

/* What proves an entry of a log after its batch: the checkpoint that
 * ended the batch holding it, and everything to rebuild the batch's part
 * of the tree (oe_merkle_batch). Owned: oe_log_batch_clear. */
typedef struct oe_log_batch {
    char origin[256];
    char *note;                  /* the signed checkpoint */
    oe_merkle_compact base;      /* the tree before the batch */
    uint64_t size;               /* the checkpoint's size */
    unsigned char (*leaves)[32]; /* size - base.size leaf hashes */
} oe_log_batch;
void oe_log_batch_clear(oe_log_batch *b);

/* A stored checkpoint with its log, as oe_store_each_checkpoint reads it;
 * borrowed for the call only. */
typedef struct oe_checkpoint_view {
    int64_t log_id;
    const char *origin;
    const unsigned char *public_key; /* 32 bytes */
    uint64_t from_size, size;
    const unsigned char *root;           /* 32 bytes */
    const unsigned char (*leaves)[32];   /* size - from_size leaf hashes */
    const unsigned char (*frontier)[32]; /* popcount(size) hashes: the tree at size */
    const char *note;
    double created_at;
} oe_checkpoint_view;
typedef int (*oe_store_checkpoint_fn)(void *ctx, const oe_checkpoint_view *c);

/* A row of a receipts log as oe_store_log_rows_next reads it, for an
 * audit: an execution or a rejection, each with what its leaf is rebuilt
 * from (oe_tlog_leaf_of_execution, oe_tlog_leaf_of_rejection). Borrowed
 * until the next call; payloads are not read (NULL). */
typedef struct oe_log_row {
    int rejected;           /* 0: execution holds the row; 1: rejection does */
    oe_execution execution; /* log_index -1 when the row has none */
    oe_rejection rejection; /* likewise */
    /* 1 when a column holds what no row written by openexec holds and the
     * record cannot show (a NUL byte in a text, an id or hash too long for
     * its field): the row is not what was signed. */
    int unreadable;
} oe_log_row;

/* A backend's operations (ledger/). Every store starts with the base. */
typedef struct oe_store_ops {
    const char *name; /* "sqlite" or "postgresql" */
    void (*free)(oe_store *s);
    int (*begin)(oe_store *s, char *err, size_t errlen);
    int (*commit)(oe_store *s, char *err, size_t errlen);
    void (*rollback)(oe_store *s);
    int (*find)(oe_store *s, int by_id, const char *text, oe_ledger_key key, oe_execution *e,
                char *err, size_t errlen);
    int (*approval_used)(oe_store *s, const char *approval_id, oe_ledger_key key, char *err,
                         size_t errlen);
    int (*insert_execution)(oe_store *s, const oe_execution *e, char *err, size_t errlen);
    int (*insert_rejection)(oe_store *s, const oe_rejection *r, char *err, size_t errlen);
    long long (*count)(oe_store *s, int rejections);
    /* Optional: learns in one round trip which of a batch's nonces and
     * approval ids are already recorded (see oe_store_prefetch). */
    int (*prefetch)(oe_store *s, const char *const *nonces, size_t n_nonces,
                    const char *const *approvals, size_t n_approvals, char *err, size_t errlen);
    int (*each_execution)(oe_store *s, oe_store_execution_fn fn, void *ctx, char *err,
                          size_t errlen);
    int (*each_rejection)(oe_store *s, const char *nonce, oe_store_rejection_fn fn, void *ctx,
                          char *err, size_t errlen);
    /* Optional (a backend without them cannot keep signed receipts). */
    int (*log_open)(oe_store *s, const oe_log_key *key, double now, int64_t *log_id,
                    oe_merkle_compact *state, char *err, size_t errlen);
    int (*insert_checkpoint)(oe_store *s, const oe_checkpoint_row *c, char *err, size_t errlen);
    int (*log_batch)(oe_store *s, int64_t log_id, uint64_t index, oe_log_batch *out, char *err,
                     size_t errlen);
    int (*log_checkpoint)(oe_store *s, const char *origin, char **note, char *err, size_t errlen);
    int (*each_checkpoint)(oe_store *s, const char *origin, oe_store_checkpoint_fn fn, void *ctx,
                           char *err, size_t errlen);
    int (*log_rows_open)(oe_store *s, int64_t log_id, char *err, size_t errlen);
    int (*log_rows_next)(oe_store *s, oe_log_row *row, char *err, size_t errlen);
    void (*log_rows_close)(oe_store *s);
} oe_store_ops;

struct oe_store {
    const oe_store_ops *ops;
    int shared; /* 1: every worker of a group may use this ledger at once */
};

/* The schema version this binary writes, per backend. A ledger of an
 * older version is upgraded in place when a writer opens it; a newer one
 * is refused. SQLite version 3 is the append-ordered layout (ledger/sqlite.c),
 * version 4 (PostgreSQL 3) adds the payload column to both tables, SQLite
 * version 5 indexes ids by insertion order first (id_bucket), version 6
 * drops the uniqueness trigger for unique indexes, version 7 adds the
 * receipts logs and their checkpoints. */
#define OE_SQLITE_SCHEMA_VERSION 8
#define OE_POSTGRES_SCHEMA_VERSION 5

void oe_store_free(oe_store *s);

/* "sqlite" or "postgresql". */
const char *oe_store_backend(const oe_store *s);

/* 1 when the ledger is shared by every worker that opens it, whatever host
 * it runs on (PostgreSQL); 0 for a SQLite file. */
int oe_store_shared(const oe_store *s);

/* Transactions, for one batch of outcomes. */
int oe_store_begin(oe_store *s, char *err, size_t errlen);
int oe_store_commit(oe_store *s, char *err, size_t errlen);
void oe_store_rollback(oe_store *s);

/* Inside a transaction, before a batch's look-ups: tells the store which
 * nonces and approval ids the batch will ask about (the strings must stay
 * valid until the transaction ends), so that a store across a network can
 * answer "not recorded" without a round trip per request. An answer may be
 * stale by the time of the insert (another worker commits first): the
 * insert's uniqueness check still decides (OE_EDUP_NONCE, OE_EDUP_APPROVAL). A no-op for
 * stores without it. */
int oe_store_prefetch(oe_store *s, const char *const *nonces, size_t n_nonces,
                      const char *const *approvals, size_t n_approvals, char *err, size_t errlen);

/* Looks up an execution by nonce (whose key is nonce_key,
 * oe_ledger_key_of) or by id. Returns 1 and fills e when found, 0 when
 * not, negative on failure. */
int oe_store_find_by_nonce(oe_store *s, const char *nonce, oe_ledger_key nonce_key, oe_execution *e,
                           char *err, size_t errlen);
int oe_store_find_by_id(oe_store *s, const char *id, oe_execution *e, char *err, size_t errlen);

/* 1 when an execution already used this approval id, 0 when not, negative
 * on failure. */
int oe_store_approval_used(oe_store *s, const char *approval_id, oe_ledger_key approval_key,
                           char *err, size_t errlen);

/* Inserts an execution. Returns 0, OE_EDUP_NONCE, OE_EDUP_APPROVAL
 * (another execution holds the nonce or the approval id: on a shared ledger
 * it may have committed after this transaction's look-ups; read the winner)
 * or a failure. */
int oe_store_insert_execution(oe_store *s, const oe_execution *e, char *err, size_t errlen);

/* Records a rejected attempt (its strings are copied or written before
 * the call returns). */
int oe_store_insert_rejection(oe_store *s, const oe_rejection *r, char *err, size_t errlen);

/* Every execution, in the order recorded (SQLite: as appended;
 * PostgreSQL: by created_at, then id), streamed: memory does not grow with
 * the ledger. Returns 0, fn's non-zero return, or a failure (negative, with
 * a reason in err). For audits (`openexec ledger export`), outside the
 * engine's transactions. */
int oe_store_each_execution(oe_store *s, oe_store_execution_fn fn, void *ctx, char *err,
                            size_t errlen);

/* Every rejected attempt in the order recorded, or only those of nonce
 * when it is not NULL. Returns as oe_store_each_execution. */
int oe_store_each_rejection(oe_store *s, const char *nonce, oe_store_rejection_fn fn, void *ctx,
                            char *err, size_t errlen);

/* 1 when the backend keeps receipts logs (oe_store_log_open). */
int oe_store_has_logs(const oe_store *s);

/* The receipts log of key->origin, added on first use: its id, and its
 * tree at the last checkpoint (empty for a new log) into state. Returns 0,
 * OE_EINVAL when the origin belongs to another public key, or a failure.
 * Outside the engine's transactions (at start-up). */
int oe_store_log_open(oe_store *s, const oe_log_key *key, double now, int64_t *log_id,
                      oe_merkle_compact *state, char *err, size_t errlen);

/* Inside a batch's transaction: stores its checkpoint. Returns 0,
 * OE_EDUP_LOG when the log already has a checkpoint from c->from_size or
 * of c's size (another process appends with the same key), or a failure. */
int oe_store_insert_checkpoint(oe_store *s, const oe_checkpoint_row *c, char *err, size_t errlen);

/* The batch of log log_id that holds entry index: 1 and out filled, 0
 * when no checkpoint covers it (yet), or a failure. */
int oe_store_log_batch(oe_store *s, int64_t log_id, uint64_t index, oe_log_batch *out, char *err,
                       size_t errlen);

/* The latest signed checkpoint of the log named origin: 1 and *note (the
 * caller frees it), 0 when the ledger has no such log or no checkpoint of
 * it, or a failure. Read-only stores too. */
int oe_store_log_checkpoint(oe_store *s, const char *origin, char **note, char *err, size_t errlen);

/* Every checkpoint of the log named origin (NULL: of every log, log by
 * log), in size order, streamed. A row whose blobs do not have their
 * stated sizes is a failure (OE_ESTORE). Returns 0, fn's non-zero return,
 * or a failure. For audits and proofs, outside the engine's transactions. */
int oe_store_each_checkpoint(oe_store *s, const char *origin, oe_store_checkpoint_fn fn, void *ctx,
                             char *err, size_t errlen);

/* The rows of one receipts log, executions and rejections together, in
 * log_index order (rows without an index first), read one at a time:
 * oe_store_log_rows_open, then oe_store_log_rows_next until it returns 0,
 * then oe_store_log_rows_close (always, after a successful open; it ends
 * the query early when rows are left). log_id 0 reads instead the rows
 * that are in no log with a checkpoint, in no particular order: those
 * written unsigned (log_id NULL, read as 0) and any naming a log that has
 * no checkpoint. One read at a time per store, and the store serves no
 * other call until the close (another thread's call waits for it; the
 * same thread must not make one): an audit streams the checkpoints
 * (oe_store_each_checkpoint) from another store on the same ledger. The
 * database sorts the rows (no index orders them): linear in the log's
 * size in memory or temporary files of the database, not of this process.
 * open returns 0 or a failure; next 1 with the row in *row, 0 at the end,
 * or a failure. For audits, outside the engine's transactions. */
int oe_store_log_rows_open(oe_store *s, int64_t log_id, char *err, size_t errlen);
int oe_store_log_rows_next(oe_store *s, oe_log_row *row, char *err, size_t errlen);
void oe_store_log_rows_close(oe_store *s);

/* Row counts, for tests and metrics. A failure is negative: an oe_rc
 * (OE_ESTORE, OE_EUNAVAIL). */
long long oe_store_count_executions(oe_store *s);
long long oe_store_count_rejections(oe_store *s);

#endif
