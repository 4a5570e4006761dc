/* Proofs of entries of receipts logs (docs/protocol.md §8), made from the ledger
 * alone: from the leaf hashes each checkpoint keeps of its batch, with no
 * writer's state. The proof of a stored entry in its own batch's
 * checkpoint (a replay's receipt; GET /receipts/{id}/proof), in a later
 * tree of its log (?size=N), and the consistency of two checkpoints of a
 * log (GET /log/{origin}/consistency). The last two read every leaf hash
 * of the log up to the larger size (streamed: memory stays small), so
 * they cost about one SHA-256 per entry of the log.
 */
#ifndef OE_PROOFS_H
#define OE_PROOFS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "merkle.h"
#include "status.h"
#include "store.h"

/* Appends the proof object of entry index of log origin to out: {"checkpoint": note,
 * "inclusion": [the n hashes of path], "leaf": leaf[0..len), "log_index": index,
 * "log_origin": origin}, keys in that (sorted) order. Each path[i] is a hash's base64
 * text, 44 characters (oe_merkle_batch's text: one per node, however many paths hold
 * it). The note comes as its JSON string literal, note_json[0..note_json_len)
 * (oe_json_dump_string: one per checkpoint, however many entries it proves). Returns
 * OE_OK, OE_EINVAL (text that is not UTF-8) or the buffer's failure (out as it was). */
oe_rc oe_proof_render(const char *origin, const char *note_json, size_t note_json_len,
                      uint64_t index, const char *const *path, size_t n, const char *leaf,
                      size_t len, oe_buf *out);

/* The last batch a proof of a stored entry came from, kept for the next
 * proof of an entry of the same batch (a batch's replays come together).
 * Zero it to start; oe_proof_cache_clear releases it. */
typedef struct oe_proof_cache {
    int64_t log_id; /* 0: empty */
    oe_log_batch batch;
    oe_merkle_batch tree;
} oe_proof_cache;
void oe_proof_cache_clear(oe_proof_cache *c);

/* Appends the proof of the stored execution rec (its log_id and
 * log_index) in the checkpoint of the batch that appended it, after
 * checking that the row is still what was signed; nothing for a row
 * written unsigned (log_id 0). Returns OE_OK, or with a reason OE_ESTORE
 * (no checkpoint covers it, or the row was changed), the store's failure,
 * or OE_ENOMEM. */
oe_rc oe_proof_of_entry(oe_proof_cache *cache, oe_store *store, const oe_execution *rec,
                        oe_buf *out, char *err, size_t errlen);

/* Appends the proof of the stored execution rec in the log's tree of size
 * size, which must be the size of one of its checkpoints (the proof
 * carries that checkpoint). Returns OE_OK; OE_EINVAL with a reason when
 * rec is unsigned or size is no checkpoint's size or does not hold the
 * entry; OE_ESTORE when the ledger's checkpoints do not follow one
 * another, or the row is not what was signed; or a failure. */
oe_rc oe_proof_in_tree(oe_store *store, const oe_execution *rec, uint64_t size, oe_buf *out,
                       char *err, size_t errlen);

/* Appends the consistency proof (RFC 9162 §2.1.4) between the checkpoints
 * of sizes from and to (0 < from <= to) of log origin: {"consistency":
 * [base64 hashes], "from": {"checkpoint": note, "size": from},
 * "log_origin": origin, "to": {"checkpoint": note, "size": to}}. Returns
 * as oe_proof_in_tree (OE_EINVAL also for an unknown origin). */
oe_rc oe_proof_consistency(oe_store *store, const char *origin, uint64_t from, uint64_t to,
                           oe_buf *out, char *err, size_t errlen);

#endif
