/* The engine: request -> outcome, deterministic, persisted in batches.
 *
 * oe_engine_process takes a batch of decoded requests and, inside one
 * SQLite transaction, answers each: replay from the store, validation
 * (allow-list, approvals), execution, and the record of the outcome. The
 * engine knows nothing of Kafka or HTTP; both call it the same way.
 */
#ifndef OE_ENGINE_H
#define OE_ENGINE_H

#include <stddef.h>

#include "buf.h"
#include "request.h"
#include "store.h"

/* Largest result_json an action may produce: a receipt must fit in one
 * Kafka message (brokers default to 1 MiB) even in JSON with the result
 * escaped once more. Larger results are rejected (invalid_request). */
#define OE_RESULT_MAX_BYTES ((size_t)256 << 10)

typedef enum oe_status { OE_STATUS_EXECUTED, OE_STATUS_REPLAYED, OE_STATUS_REJECTED } oe_status;
#define OE_STATUS_COUNT 3

/* "executed", "replayed" or "rejected": the one table of the names (the
 * receipts' status field, the Avro enum's symbols in this order). */
const char *oe_status_name(oe_status s);
/* The status named by the len bytes at name: OE_OK, or OE_EINVAL
 * (status.h) when they name no status. */
int oe_status_from_name(const char *name, size_t len, oe_status *out);

/* How the engine decides. Filled once at start-up; the engine copies it. */
typedef struct oe_engine_config {
    int clawshield;              /* 1: approval artifacts required */
    const char *secret;          /* HMAC secrets ("," between, up to 8) or NULL */
    const char *public_key_pem;  /* Ed25519 public keys (PEM blocks, up to 8) or NULL */
    const char *tenant;          /* CLAWSHIELD_TENANT_ID, "" when unset */
    const char *allowed_actions; /* comma-separated allow-list, "" = all */
    double max_age;              /* seconds an HMAC artifact stays valid [300] */
    double max_skew;             /* seconds issued_at may lie ahead [30] */
    struct oe_metrics *metrics;  /* NULL, or where commit times are counted */
    int payload_hash_only;       /* OPENEXEC_LEDGER_PAYLOADS=hash: rows keep no payload */
    struct oe_tlog *tlog;        /* the writer's receipts log (tlog.h), or NULL: unsigned */
    /* Operators' Lua actions (lua_actions.h), or NULL: built-ins only.
     * Borrowed: the set must outlive the engine. */
    const struct oe_lua_actions *lua_actions;
} oe_engine_config;

/* What became of one request. Reused across batches: oe_outcome_clear. */
typedef struct oe_outcome {
    oe_status status;
    oe_error_code error;   /* OE_ERR_NONE unless rejected */
    char detail[512];      /* reason when rejected */
    char id[37];           /* execution id, "" when rejected */
    char request_hash[65]; /* "" when the request could not be read */
    char receipt[65];      /* receipt hash, "" when rejected */
    /* The code hash of the Lua action that ran (executed, its replay, or
     * action_failed): lowercase hex SHA-256 of its file; "" otherwise. */
    char action_code_hash[65];
    int approved;
    char *approval_id;  /* owned; NULL in demo mode or when rejected */
    oe_buf result_json; /* json.dumps(result, sort_keys=True) */
    /* Signed receipts (tlog.h): the entry's leaf and, once its batch is
     * committed, its proof (a JSON object, docs/protocol.md §8); both empty when the
     * outcome has no entry of its own in the log (a replay) or the engine
     * signs nothing. Read them by length: an empty one is not always a ""
     * string (its bytes are those of an earlier outcome). */
    oe_buf leaf;
    oe_buf proof;
    int logged;         /* 1: leaf is entry log_index of this batch */
    int proof_pending;  /* 1: a replay of entry log_index of this batch (leaf) */
    uint64_t log_index; /* when logged or proof_pending */
} oe_outcome;

void oe_outcome_init(oe_outcome *o);
void oe_outcome_clear(oe_outcome *o);
/* Frees the outcome's buffers that are over 4 KiB (a large result, its
 * leaf and proof), emptying them; smaller ones are kept for reuse. The
 * engine does it as it reuses an outcome; a caller that holds outcomes
 * between batches does it once it is done with one (the worker: once its
 * receipt is encoded), so that what a batch's large results took does not
 * stay with places a later batch leaves unused. */
void oe_outcome_shed(oe_outcome *o);

typedef struct oe_engine oe_engine;

/* Creates an engine writing to store (borrowed; must outlive the engine).
 * The registered actions are the built-ins and the Lua actions of
 * cfg->lua_actions, which get an interpreter of the engine's own. Returns
 * OE_OK, or with a reason in err: OE_EINVAL for a configuration it refuses
 * (an allow-list naming no registered action, a bad key or secret,
 * clawshield without key), OE_ELIMIT for more keys or secrets than
 * OE_APPROVAL_KEYS_MAX (oe_approval_keys_new), or OE_ENOMEM (status.h). */
int oe_engine_new(const oe_engine_config *cfg, oe_store *store, oe_engine **out, char *err,
                  size_t errlen);
void oe_engine_free(oe_engine *e);

/* Starts the engine's helper threads (one per core beyond the first, at
 * most OE_ENGINE_THREADS - 1), which check large batches with the caller;
 * returns how many started. Without them every batch is checked on its
 * caller's thread alone. oe_engine_stop joins them (no batch may be in
 * flight); oe_engine_free stops them too. */
int oe_engine_start(oe_engine *e);
void oe_engine_stop(oe_engine *e);

/* Keeps the calling thread, the one that will run the engine's batches,
 * to the CPU none of the started helpers keeps to (oe_pool_keep_caller):
 * a batch's parallel parts (checks, log leaves, proofs) then never share
 * a core with it. Returns that CPU, or -1 (left where it was). */
int oe_engine_keep_caller(oe_engine *e);

/* One request of a batch, as the engine sees it. The caller decodes into
 * req (or sets decode_error when the decoder rejected it) and owns
 * everything; the engine fills out. */
typedef struct oe_batch_item {
    oe_request req;
    oe_error_code decode_error; /* OE_ERR_NONE, or the decoder's verdict */
    const char *decode_detail;  /* its reason (borrowed), when decode_error */
    oe_outcome out;             /* filled by oe_engine_process */
    /* Optional (set by the caller): called with complete_ctx once out is
     * complete, its proof included, on the engine's helpers or the calling
     * thread while the batch's transaction commits, so that work on the
     * answer (e.g. encoding a receipt) overlaps the commit. Whether the
     * batch committed is known only when oe_engine_process returns; a
     * batch tried again calls it again, and what it made then replaces
     * what it made before. Returns 1 when it made what it needs of out's
     * proof (a copy, an encoded receipt): a proof the batch's log made for
     * it is then not kept in out (out.proof empty), so that a batch's
     * proofs are not each written to memory of their own and read again;
     * 0 keeps out whole. A hook that returns 1 may also shed out
     * (oe_outcome_shed): the engine reads nothing of it afterwards. */
    int (*complete)(void *complete_ctx, struct oe_batch_item *it);
    void *complete_ctx;
    /* The engine's scratch, filled by oe_engine_process before its
     * transaction (by several threads for a large batch): the request hash
     * and the signature's verdict. Callers neither set nor read it. */
    struct oe_batch_pre {
        int hashed;         /* 1: hash is the request hash; 0: hashed in the transaction */
        oe_buf text;        /* the text hashed (the payload's row is cut from it) */
        size_t payload_off; /* where the payload starts in text */
        int sig;            /* -1: not checked; else oe_approval_check_signature's 0 or 1 */
        int ed25519;        /* the scheme checked */
        char hash[65];      /* the request hash */
        /* The ledger keys (store.h) of the nonce and the approval id
         * (0 when absent), computed once for the look-ups and the insert. */
        oe_ledger_key nonce_key, approval_key;
        char detail[96]; /* the reason of a bad signature */
    } pre;
} oe_batch_item;

/* Batches of at least this many requests are hashed and their signatures
 * checked by up to OE_ENGINE_THREADS threads (the caller's included, at
 * most one per core) before the transaction; smaller ones on the caller's
 * thread. Ed25519 verification (~115 us) is most of a signed batch's time. */
#define OE_ENGINE_PARALLEL_MIN 64
#define OE_ENGINE_THREADS 8

/* Answers n requests in one transaction. With signing on, a batch that
 * recorded entries ends with a signed checkpoint; when checkpoint is not
 * NULL it is reset and then holds that checkpoint's signed note (empty
 * when the batch signed none, or when memory failed copying it: the note
 * is in the ledger either way). An item with a decode_error is
 * recorded as rejected without looking further. now is the wall clock in
 * seconds (for artifact age). Returns OE_OK (0), or a resource failure
 * with a reason in err (status.h): OE_ESTORE or OE_EUNAVAIL from the
 * ledger, OE_ENOMEM, or OE_ELIMIT for a replay whose stored result is
 * larger than OE_RESULT_MAX_BYTES. Then nothing of the batch is stored and
 * no outcome may be reported (a transient failure never becomes a
 * receipt). OE_EDUP_LOG: another process appended to this writer's
 * receipts log (the same signing key twice); this and every later batch
 * is refused (fail closed, oe_engine_log_taken). Thread-safe: batches are
 * serialised. */
int oe_engine_process(oe_engine *e, oe_batch_item *const *items, size_t n, double now,
                      oe_buf *checkpoint, char *err, size_t errlen);

/* 1 (with the reason) once another process appended to this writer's
 * receipts log: the engine refuses every batch. */
int oe_engine_log_taken(oe_engine *e, char *reason, size_t len);

/* Read access for the admin server. */
int oe_engine_clawshield(const oe_engine *e);
int oe_engine_signature_verification(const oe_engine *e);
/* 1 when the allow-list lets this action run (always, when open). */
int oe_engine_action_allowed(const oe_engine *e, const char *action);

/* The registered actions, which a reload replaces: read them between
 * oe_engine_actions_read(e, 1) and oe_engine_actions_read(e, 0), and only
 * there (the names belong to the engine and the set). */
void oe_engine_actions_read(const oe_engine *e, int lock);
/* The allow-list as configured: sets *names to its action names in their
 * configured order, repeats removed, and returns how many (0 when open). */
size_t oe_engine_allow_list(const oe_engine *e, const char *const **names);
/* Every registered action's name (built-ins first) and the Lua actions'
 * set (NULL: none; names past the built-ins are its actions, in order). */
size_t oe_engine_actions(const oe_engine *e, const char *const **names,
                         const struct oe_lua_actions **lua);

/* Replaces the Lua actions with set (borrowed; NULL: none) after the batch
 * in hand, all at once: every later request runs the new set; the
 * allow-list is resolved again and must name only actions it has. The
 * caller frees the old set after this returns OE_OK. Returns OE_OK, or
 * with a reason in err (the engine unchanged) OE_EINVAL (the allow-list
 * names an action the set has not) or OE_ENOMEM. */
int oe_engine_reload_actions(oe_engine *e, const struct oe_lua_actions *set, char *err,
                             size_t errlen);

/* The verification keys (for /health's key ids and the start-up warnings). */
const oe_approval_keys *oe_engine_approval_keys(const oe_engine *e);

#endif
