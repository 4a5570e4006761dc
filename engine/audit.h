/* The offline audit of a ledger against its receipts logs (docs/protocol.md §8;
 * `openexec ledger audit`): every stored checkpoint is checked, and every
 * row against the leaf that was signed for it, and the first problem is
 * named.
 *
 * For each log, its checkpoints in size order (oe_store_each_checkpoint):
 * they chain from size 0, each starting where the one before ended; each
 * signed note verifies with the log's key as the ledger lists it, which
 * must be one of the trusted keys when they are given, and its text is a
 * checkpoint of the log's origin, of the row's size and root; the row's
 * leaf hashes,
 * appended to the tree of the checkpoints before it, give exactly that
 * root and that compact range (the stored frontier). In step, the log's
 * rows in log_index order (oe_store_log_rows_next, from a second store on
 * the same ledger): each row's leaf, rebuilt as the engine wrote it
 * (oe_tlog_leaf_of_execution, oe_tlog_leaf_of_rejection), must hash to
 * the stored leaf hash of its index. Then the rows in no log: written
 * before the log began (before its first checkpoint) they are counted as
 * unsigned; later ones were inserted. Then each checkpoint published
 * earlier and given to the audit must verify, and the ledger must hold a
 * checkpoint of its log of exactly its size and root: a log cut back
 * (rows and checkpoints of its last batches deleted) is found only so.
 *
 * Memory does not grow with the ledger: the tree is kept as its compact
 * range, and one batch's leaf hashes (the checkpoint's own) at a time.
 * Nothing here knows a backend; a library function, it prints nothing.
 */
#ifndef OE_AUDIT_H
#define OE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "store.h"

/* What the ledger is checked against. Everything is borrowed for the
 * call. */
typedef struct oe_audit_options {
    /* The Ed25519 keys the checkpoints must be signed by; NULL (ntrusted
     * 0): each log's own key, as the ledger lists it. */
    const unsigned char (*trusted)[32];
    size_t ntrusted;
    /* Signed checkpoints published earlier (C2SP notes, their texts), and
     * a name for each in messages (a file name; NULL: "#N"). */
    const char *const *notes;
    const char *const *note_names;
    size_t nnotes;
} oe_audit_options;

/* A log found intact, for a summary line. Borrowed for the call. */
typedef struct oe_audit_log {
    const char *origin;
    uint64_t entries;     /* its size: rows checked */
    uint64_t checkpoints; /* checkpoints checked */
} oe_audit_log;

/* Called once per log found intact, in the order audited; a non-zero
 * return stops the audit and is returned by it. */
typedef int (*oe_audit_log_fn)(void *ctx, const oe_audit_log *log);

/* The verdict. */
typedef struct oe_audit_report {
    int intact;             /* 1: nothing wrong found; 0: reason names the first problem */
    char reason[1024];      /* one line, without a final newline */
    uint64_t logs;          /* logs checked */
    uint64_t unsigned_rows; /* rows written before any log began */
} oe_audit_report;

/* Audits the ledger that checkpoints and rows are two stores of (two
 * connections: the checkpoints are streamed from one while the rows are
 * read from the other; a store serves one read at a time). Either may see
 * a writer's later batches: rows past the checkpoints read are checked
 * against the ledger again and ignored when a checkpoint covers them
 * since. Fills report and calls on_log (may be NULL) for each intact log.
 * Returns OE_OK when the audit reached a verdict (report->intact says
 * which), on_log's non-zero return, or a failure with a reason in err:
 * OE_EINVAL (one store given twice), OE_ENOMEM, or a store's failure
 * (OE_ESTORE also for a checkpoint row whose blobs do not have their
 * sizes). */
int oe_audit_ledger(oe_store *checkpoints, oe_store *rows, const oe_audit_options *opt,
                    oe_audit_log_fn on_log, void *ctx, oe_audit_report *report, char *err,
                    size_t errlen);

#endif
