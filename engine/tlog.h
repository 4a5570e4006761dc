/* The writer's receipts log (docs/protocol.md §8): every ledger entry it commits, an
 * execution or a rejection, is a leaf of an append-only RFC 6962 Merkle
 * tree kept per signing key; each committed batch ends with a checkpoint
 * (C2SP tlog-checkpoint) signed as a C2SP note, stored in the batch's own
 * transaction; each new entry's receipt carries its leaf, that checkpoint
 * and the inclusion path from one to the other, so that anyone holding the
 * public key can check it offline.
 *
 * Used by the engine inside its transactions (the engine's lock serialises
 * every call on one log): oe_tlog_begin at the start of a batch, then for
 * each entry recorded oe_tlog_next (its index, stored in its row) and,
 * once the row is in, oe_tlog_reserve of that index; the leaves of the
 * batch's entries then (oe_tlog_set_leaf, in parallel); oe_tlog_seal before the
 * commit stores the signed checkpoint; oe_tlog_commit after a commit (or
 * oe_tlog_abort after a rollback) moves the log on (or back). Proofs
 * (oe_tlog_proof) are made after the seal, from the batch's own leaves and
 * the tree before it: no earlier leaf is read.
 */
#ifndef OE_TLOG_H
#define OE_TLOG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "checkpoint.h"
#include "json.h"
#include "merkle.h"
#include "note.h"
#include "status.h"
#include "store.h"

typedef struct oe_tlog oe_tlog;

/* Most bytes of a log's origin (its C2SP name: printable ASCII, no space
 * or '+'). */
#define OE_TLOG_ORIGIN_MAX 128

/* Opens the log of signer's key in store, named origin (NULL: "openexec/"
 * and the first 16 hex digits of the key id), adding it to the ledger on
 * first use and continuing from its last checkpoint. signer is borrowed.
 * Returns OE_OK, or with a reason in err OE_EINVAL (a bad origin, an
 * origin of another key, a ledger that keeps no logs), OE_ENOMEM or the
 * store's failure. */
oe_rc oe_tlog_open(oe_store *store, const oe_signer *signer, const char *origin, double now,
                   oe_tlog **out, char *err, size_t errlen);
void oe_tlog_free(oe_tlog *t);

const char *oe_tlog_origin(const oe_tlog *t);
/* The log's id in the ledger (oe_execution.log_id). */
int64_t oe_tlog_id(const oe_tlog *t);
/* Leaves committed so far. */
uint64_t oe_tlog_size(const oe_tlog *t);

/* A ledger entry as its leaf shows it: the receipt's fields (docs/protocol.md §6)
 * with status "executed" or "rejected", plus its place and time. */
typedef struct oe_tlog_entry {
    const char *id;           /* NULL when rejected */
    const char *nonce;        /* as the receipt has it ("" when unknown) */
    const char *action;       /* likewise */
    const char *request_hash; /* likewise */
    int rejected;
    int approved;
    const char *result;  /* result_json text, NULL when rejected */
    const char *receipt; /* the receipt hash, NULL when rejected */
    const char *error_code;
    const char *detail;
    const char *approval_id;
    const char *action_code_hash; /* NULL (left out of the leaf) unless a Lua action ran */
    const char *tenant;
    double recorded_at; /* the row's created_at, seconds since the epoch */
    uint64_t log_index;
} oe_tlog_entry;

/* Appends the leaf of e to out: the canonical JSON (docs/protocol.md §3) of its
 * fields, keys sorted, recorded_at as RFC 3339 UTC with microseconds.
 * Returns OE_OK, OE_EINVAL (a string that is not UTF-8 text), or the
 * buffer's failure. */
oe_rc oe_tlog_leaf(const oe_tlog_entry *e, oe_buf *out);

/* Starts a batch of at most n entries: their leaves' places are made now,
 * so that oe_tlog_set_leaf may run on other threads while entries are
 * still reserved. OE_OK or OE_ENOMEM. */
oe_rc oe_tlog_begin(oe_tlog *t, size_t n);
/* The index the next entry gets. */
uint64_t oe_tlog_next(const oe_tlog *t);
/* Gives the next index (oe_tlog_next) to an entry whose row is in; its
 * leaf follows with oe_tlog_set_leaf before the seal. OE_OK, or OE_ELIMIT
 * past the entries oe_tlog_begin was told of. */
oe_rc oe_tlog_reserve(oe_tlog *t, uint64_t *index);
/* The leaf (its bytes) of a reserved index of this batch. Leaves of
 * distinct indexes may be set from several threads at once (the engine
 * renders them in parallel). */
void oe_tlog_set_leaf(oe_tlog *t, uint64_t index, const char *leaf, size_t len);
/* Ends the batch's part of the log: when leaves were appended, signs the
 * checkpoint of the grown tree and stores it with store (inside the
 * transaction). Returns OE_OK, or with a reason in err OE_EDUP_LOG
 * (another process appends with this key), OE_ENOMEM, OE_EIO (signing
 * failed) or the store's failure. */
oe_rc oe_tlog_seal(oe_tlog *t, oe_store *store, double now, char *err, size_t errlen);
void oe_tlog_commit(oe_tlog *t);
/* The signed note of the last checkpoint this process sealed (its length
 * in *len), or NULL before the first. */
const char *oe_tlog_note(const oe_tlog *t, size_t *len);
/* The reason of an OE_EDUP_LOG (another process appends with this key),
 * naming the log, into err. */
void oe_tlog_taken(const oe_tlog *t, char *err, size_t errlen);
void oe_tlog_abort(oe_tlog *t);

/* After oe_tlog_seal: appends the proof of the leaf at index (appended in
 * this batch, its bytes leaf[0..len)) to out, a JSON object with keys
 * checkpoint, inclusion, leaf, log_index, log_origin (docs/protocol.md §8). Returns
 * OE_OK, OE_EINVAL (index not of this batch) or the buffer's failure. */
oe_rc oe_tlog_proof(oe_tlog *t, uint64_t index, const char *leaf, size_t len, oe_buf *out);

/* The leaf of a stored execution (its log_index set), as it was
 * appended. */
oe_rc oe_tlog_leaf_of_execution(const oe_execution *rec, oe_buf *out);

/* The leaf of a stored rejection (its log_index set), as the engine
 * appended it: its nonce, action and request_hash ("" for NULL: what the
 * request did not say), error_code, detail and tenant, approved false, no
 * id, result, receipt or approval_id. */
oe_rc oe_tlog_leaf_of_rejection(const oe_rejection *rec, oe_buf *out);

/* 1 when rec is an entry of this log appended in the open batch (proved
 * by oe_tlog_proof after the seal, like the batch's own entries). */
int oe_tlog_pending(const oe_tlog *t, const oe_execution *rec);

/* What a receipt claims (docs/protocol.md §6), as a verifier reads it: NULL for
 * null, OE_TLOG_ABSENT for a field the receipt does not carry (an /execute
 * answer has no nonce or request_hash), which claims nothing and is not
 * compared; status is "executed", "replayed" or "rejected". */
extern const char oe_tlog_absent[];
#define OE_TLOG_ABSENT oe_tlog_absent
typedef struct oe_tlog_claim {
    const char *id, *nonce, *action, *request_hash, *status, *result, *receipt, *error_code,
        *detail, *approval_id;
    /* The Lua action's code hash: the leaf has it when a Lua action ran,
     * and none (null) otherwise. */
    const char *action_code_hash;
    int approved; /* 1 or 0; -1: not claimed */
} oe_tlog_claim;

/* Checks a receipt offline against trusted public keys (docs/protocol.md §8): the
 * proof (its JSON text) names a leaf whose hash is on the inclusion path
 * to the root of a checkpoint signed by a trusted key for the proof's
 * origin; the leaf's fields are the receipt's (status executed for a
 * receipt executed or replayed); and for an execution the seed's receipt
 * hash, SHA-256(id ":" result), holds. Returns OE_OK when all hold,
 * OE_EINVAL with the first reason that fails in reason, or OE_ENOMEM. */
oe_rc oe_tlog_verify(const oe_tlog_claim *c, const char *proof, size_t len,
                     const unsigned char (*trusted)[32], size_t ntrusted, char *reason,
                     size_t rlen);

/* Notes (checkpoints) already verified, by their SHA-256: every receipt of
 * a batch carries the same checkpoint, whose signature is then checked
 * once. Zero it to start; one thread at a time; bound to one set of
 * trusted keys. */
#define OE_TLOG_NOTE_CACHE 16
typedef struct oe_tlog_note_cache {
    unsigned char digest[OE_TLOG_NOTE_CACHE][32];
    size_t text_len[OE_TLOG_NOTE_CACHE];
    unsigned char used[OE_TLOG_NOTE_CACHE];
    size_t next;
} oe_tlog_note_cache;

/* oe_tlog_verify with a cache of verified notes (NULL: none). */
oe_rc oe_tlog_verify_cached(oe_tlog_note_cache *cache, const oe_tlog_claim *c, const char *proof,
                            size_t len, const unsigned char (*trusted)[32], size_t ntrusted,
                            char *reason, size_t rlen);

/* oe_tlog_verify of a receipt as a JSON object, in any of its shapes: a
 * Kafka receipt (result as its text), an /execute answer (result as the
 * value, hashed as its json.dumps text), a ledger line (result_json).
 * Returns as oe_tlog_verify. */
oe_rc oe_tlog_verify_json(const oe_json *receipt, const unsigned char (*trusted)[32],
                          size_t ntrusted, char *reason, size_t rlen);

#endif
