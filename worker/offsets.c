/* The worker's offsets (internal.h): commits in order, the ones a
 * rebalance refused, and the rebalances themselves (cooperative). Worker
 * thread. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/codec.h"
#include "engine/clock.h"
#include "engine/ids.h"
#include "engine/log.h"
#include "engine/status.h"
#include "worker/internal.h"

static void filter_offsets(oe_worker *w, rd_kafka_topic_partition_list_t **list,
                           const rd_kafka_topic_partition_list_t *parts, int keep);
static void merge_offsets(rd_kafka_topic_partition_list_t **dst,
                          const rd_kafka_topic_partition_list_t *src);

/* Writes parts as "topic: 2@2063 5@120 ..." into buf (a partition without
 * an offset has none written; "committed" offsets with offsets = 1),
 * ending in "..." when it does not fit. For the log lines of rebalances
 * and commits. */
static const char *parts_text(const rd_kafka_topic_partition_list_t *parts, int offsets, char *buf,
                              size_t size)
{
    size_t n = 0;
    const char *topic = NULL;
    buf[0] = '\0';
    for (int i = 0; parts && i < parts->cnt && n < size; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        int w;
        if (!topic || strcmp(topic, e->topic) != 0)
            w = snprintf(buf + n, size - n, "%s%s:", n ? "; " : "", e->topic);
        else
            w = 0;
        topic = e->topic;
        if (w >= 0 && (size_t)w < size - n) {
            n += (size_t)w;
            if (!offsets || e->offset < 0)
                w = snprintf(buf + n, size - n, " %d", (int)e->partition);
            else
                w = snprintf(buf + n, size - n, " %d@%lld", (int)e->partition,
                             (long long)e->offset);
        }
        if (w < 0 || (size_t)w >= size - n) {
            if (size >= 4)
                memcpy(buf + size - 4, "...", 4);
            return buf;
        }
        n += (size_t)w;
    }
    return buf;
}

/* Drops messages of revoked partitions from the batch being gathered: they
 * have not been processed, and their new owner starts from the committed
 * offset. */
static void drop_revoked(oe_worker *w, const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = 0;
    for (size_t i = 0; i < w->b.n; i++) {
        rd_kafka_message_t *m = w->b.slots[i].msg;
        int revoked = 0;
        for (int k = 0; k < parts->cnt && !revoked; k++)
            revoked = parts->elems[k].partition == m->partition &&
                      strcmp(parts->elems[k].topic, rd_kafka_topic_name(m->rkt)) == 0;
        if (revoked) {
            w->b.bytes -= m->len;
            rd_kafka_message_destroy(m);
        } else {
            w->b.slots[keep++].msg = m;
        }
    }
    w->b.n = keep;
}

/* Drops the offsets of parts from those waiting to be committed (refused
 * before, or queued behind the commit on its way) and from those sent:
 * they belong to an ownership of those partitions that has ended (or a
 * position that was lost, handle_offset_reset). */
void worker_forget_offsets(oe_worker *w, const rd_kafka_topic_partition_list_t *parts)
{
    filter_offsets(w, &w->pending_commit, parts, 0);
    filter_offsets(w, &w->commit_next, parts, 0);
    filter_offsets(w, &w->sent, parts, 0);
}

/* Drops from *list every offset below one already sent for its partition
 * in this ownership, and notes the others as sent (freeing *list when
 * nothing is left). A commit never moves a partition back. Without this
 * it could: offsets a commit was refused wait in pending_commit and join
 * the next batch's commit, which can go out after a commit with later
 * offsets of theirs that was queued behind the refused one; and
 * librdkafka before 2.4 may hand over messages again from an earlier
 * position after a rebalance. The same offset again is a retry. */
void worker_advance_sent(oe_worker *w, rd_kafka_topic_partition_list_t **list)
{
    if (!*list)
        return;
    rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new((*list)->cnt);
    for (int i = 0; i < (*list)->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &(*list)->elems[i];
        const rd_kafka_topic_partition_t *s =
            w->sent ? rd_kafka_topic_partition_list_find(w->sent, e->topic, e->partition) : NULL;
        if (!s || e->offset >= s->offset)
            rd_kafka_topic_partition_list_add(out, e->topic, e->partition)->offset = e->offset;
    }
    if (out->cnt < (*list)->cnt && oe_log_enabled(OE_LOG_DEBUG)) {
        char text[512];
        oe_log(OE_LOG_DEBUG, "worker", NULL, "offsets behind those sent before, dropped (%s)",
               parts_text(*list, 1, text, sizeof text));
    }
    rd_kafka_topic_partition_list_destroy(*list);
    *list = NULL;
    if (out->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(out);
        return;
    }
    merge_offsets(&w->sent, out);
    *list = out;
}

void worker_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    oe_worker *w = opaque;
    rd_kafka_error_t *error;
    char text[512];
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* These partitions start at the group's committed offset. Offsets
         * of an earlier ownership of them, still waiting here, would move
         * it back once a later owner has committed more: dropped, after
         * the commit on its way is answered (a refusal keeps its offsets
         * for later). */
        worker_forget_offsets(w, parts);
        worker_poll_commits(w, COMMIT_WAIT_MS);
        worker_forget_offsets(w, parts);
        if (w->commit_inflight)
            merge_offsets(&w->moved, parts); /* nor when it is answered later */
        /* Start where the group committed; a partition without a commit
         * starts at its beginning (auto.offset.reset is "error", so that
         * only a lost committed position is reported, handle_offset_reset).
         * A partition whose commit cannot be read is left to that check. */
        if (rd_kafka_committed(rk, parts, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            for (int k = 0; k < parts->cnt; k++)
                if (parts->elems[k].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    parts->elems[k].offset == RD_KAFKA_OFFSET_INVALID)
                    parts->elems[k].offset = RD_KAFKA_OFFSET_BEGINNING;
        /* librdkafka keeps a partition's pause across an unassign: one
         * paused here before, revoked and now back would stay paused for
         * ever. Its state is ours. A resume is done before the assign: a
         * resume after it outdates the partition's first offset lookup
         * (BEGINNING, or a committed offset to validate), which librdkafka
         * then repeats only after 500 ms, so the partition would fetch
         * nothing for half a second after every assignment. A partition
         * not known yet has no pause to clear (the resume skips it). */
        if (!w->paused)
            rd_kafka_resume_partitions(rk, parts);
        error = rd_kafka_incremental_assign(rk, parts);
        if (!error)
            atomic_fetch_add(&w->assigned, parts->cnt);
        if (!error && w->paused)
            rd_kafka_pause_partitions(rk, parts);
        oe_log(OE_LOG_INFO, "worker", NULL, "assigned %d partition(s) (%s)", parts->cnt,
               parts_text(parts, 1, text, sizeof text));
    } else {
        int lost = rd_kafka_assignment_lost(rk);
        /* What this worker finished is committed before the partitions
         * go: the batch in flight first (its offsets are the group's
         * now, so the new owner starts after it, with no replays). */
        worker_finish_inflight(w);
        worker_poll_commits(w, COMMIT_WAIT_MS);
        drop_revoked(w, parts);
        /* Offsets of partitions leaving us that a rebalance refused, or
         * still queued behind a commit that did not come back: committed
         * now if the group still takes them (a lost assignment cannot). */
        rd_kafka_topic_partition_list_t *leaving = NULL;
        if (w->pending_commit)
            merge_offsets(&leaving, w->pending_commit);
        if (w->commit_next)
            merge_offsets(&leaving, w->commit_next);
        filter_offsets(w, &leaving, parts, 1);
        if (!lost)
            worker_advance_sent(w, &leaving);
        if (leaving && !lost) {
            rd_kafka_resp_err_t e = rd_kafka_commit(rk, leaving, 0);
            oe_log(OE_LOG_INFO, "worker", NULL, "offsets of %d revoked partition(s) (%s): %s",
                   leaving->cnt, parts_text(leaving, 1, text, sizeof text),
                   e ? rd_kafka_err2str(e) : "committed");
        }
        if (leaving)
            rd_kafka_topic_partition_list_destroy(leaving);
        worker_forget_offsets(w, parts);
        if (w->commit_inflight) {
            /* Its answer comes after the partitions have gone: a refusal
             * must not keep their offsets. If it is taken late, the
             * partitions' committed offsets may be behind their new
             * owners' (re-delivered and answered from the ledger). */
            merge_offsets(&w->moved, parts);
            oe_log(OE_LOG_WARN, "worker", NULL,
                   "an offset commit was not answered within %d s before partitions were "
                   "revoked (%s)",
                   COMMIT_WAIT_MS / 1000, parts_text(parts, 0, text, sizeof text));
        }
        error = rd_kafka_incremental_unassign(rk, parts);
        atomic_fetch_sub(&w->assigned, parts->cnt);
        oe_log(OE_LOG_INFO, "worker", NULL, "revoked %d partition(s)%s (%s)", parts->cnt,
               lost ? " (lost)" : "", parts_text(parts, 0, text, sizeof text));
    }
    if (error) {
        oe_log(OE_LOG_WARN, "worker", NULL, "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    atomic_store(&w->cfg.kafka_metrics->assigned_partitions, atomic_load(&w->assigned));
    w->sharing_dirty = 1;
}

/* The offsets to commit: one past the last message of each partition. */
rd_kafka_topic_partition_list_t *worker_batch_offsets(oe_worker *w)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < w->b.n; i++) {
        const rd_kafka_message_t *m = w->b.slots[i].msg;
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(list, rd_kafka_topic_name(m->rkt), m->partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(m->rkt), m->partition);
        if (m->offset + 1 > p->offset)
            p->offset = m->offset + 1;
    }
    return list;
}

/* Errors of a commit refused because the group is rebalancing or has
 * moved on to a new generation: the same offsets may be committed once the
 * rebalance is over, for the partitions still ours. */
static int rebalance_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
           err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || err == RD_KAFKA_RESP_ERR__STATE;
}

/* Adds src's offsets to *dst (created when NULL), keeping the larger
 * offset of a partition in both. */
static void merge_offsets(rd_kafka_topic_partition_list_t **dst,
                          const rd_kafka_topic_partition_list_t *src)
{
    if (!*dst)
        *dst = rd_kafka_topic_partition_list_new(src->cnt > 0 ? src->cnt : 1);
    for (int i = 0; i < src->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &src->elems[i];
        rd_kafka_topic_partition_t *d =
            rd_kafka_topic_partition_list_find(*dst, e->topic, e->partition);
        if (!d)
            rd_kafka_topic_partition_list_add(*dst, e->topic, e->partition)->offset = e->offset;
        else if (e->offset > d->offset)
            d->offset = e->offset;
    }
}

/* Keeps in *list the partitions of parts (keep = 1) or all but those
 * (keep = 0); parts NULL is the current assignment (nothing changes when it
 * cannot be read). Frees *list when it ends up empty. */
static void filter_offsets(oe_worker *w, rd_kafka_topic_partition_list_t **list,
                           const rd_kafka_topic_partition_list_t *parts, int keep)
{
    if (!*list)
        return;
    rd_kafka_topic_partition_list_t *owned = NULL;
    if (!parts) {
        if (rd_kafka_assignment(w->consumer, &owned) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        parts = owned;
    }
    rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new((*list)->cnt);
    for (int i = 0; i < (*list)->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &(*list)->elems[i];
        if ((rd_kafka_topic_partition_list_find(parts, e->topic, e->partition) != NULL) == keep)
            rd_kafka_topic_partition_list_add(out, e->topic, e->partition)->offset = e->offset;
    }
    if (owned)
        rd_kafka_topic_partition_list_destroy(owned);
    rd_kafka_topic_partition_list_destroy(*list);
    *list = out;
    if (out->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(out);
        *list = NULL;
    }
}

/* Commits list synchronously: 0, or the error of the last attempt (a
 * rebalance error at once, other errors after 5 attempts with backoff). */
static rd_kafka_resp_err_t commit_list(oe_worker *w, const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < 5; attempt++) {
        err = rd_kafka_commit(w->consumer, list, 0);
        if (!err || rebalance_error(err))
            return err;
        oe_log(OE_LOG_WARN, "worker", NULL, "offset commit: %s%s", rd_kafka_err2str(err),
               attempt < 4 ? " (retrying)" : "");
        if (attempt < 4)
            oe_sleep_ms(100L << attempt);
    }
    return err;
}

static void not_committed(rd_kafka_resp_err_t err)
{
    oe_log(OE_LOG_WARN, "worker", NULL,
           "offset commit: %s (not committed: re-delivered and answered from the ledger)",
           rd_kafka_err2str(err));
}

/* Keeps offsets a commit did not take in pending_commit: tried again
 * every 200 ms (worker_retry_pending_commit) for the partitions still
 * ours, and joined to the next batch's commit; the others are
 * re-processed by their new owner and answered from the ledger. Never
 * sent again at once: during a rebalance every commit is refused, and
 * librdkafka takes each refusal for a reason to rejoin the group. */
static void defer_offsets(oe_worker *w, const rd_kafka_topic_partition_list_t *list)
{
    if (!w->pending_commit)
        w->pending_since = oe_monotonic();
    merge_offsets(&w->pending_commit, list);
    w->next_pending_try = oe_monotonic() + 0.2;
}

/* A commit went through: offsets waiting in pending_commit that it covers
 * (the same partition at the same or a later offset) are done, so that an
 * older commit is never tried again after a newer one. */
static void prune_pending(oe_worker *w, const rd_kafka_topic_partition_list_t *done)
{
    rd_kafka_topic_partition_list_t *p = w->pending_commit;
    if (!p)
        return;
    rd_kafka_topic_partition_list_t *keep = rd_kafka_topic_partition_list_new(p->cnt);
    for (int i = 0; i < p->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &p->elems[i];
        const rd_kafka_topic_partition_t *d =
            rd_kafka_topic_partition_list_find(done, e->topic, e->partition);
        if (!d || d->offset < e->offset)
            rd_kafka_topic_partition_list_add(keep, e->topic, e->partition)->offset = e->offset;
    }
    rd_kafka_topic_partition_list_destroy(p);
    w->pending_commit = keep;
    if (keep->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(keep);
        w->pending_commit = NULL;
    }
}

/* Sends commit_next when no commit is on its way: one commit at a time,
 * so that they reach the group in the order the batches finished and a
 * late one never moves a partition back. */
static void send_commit(oe_worker *w)
{
    if (w->commit_inflight || !w->commit_next)
        return;
    rd_kafka_topic_partition_list_t *list = w->commit_next;
    w->commit_next = NULL;
    worker_advance_sent(w, &list);
    if (!list)
        return;
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(w->consumer, list, w->commit_q, NULL, NULL);
    if (err) {
        oe_log(OE_LOG_INFO, "worker", NULL, "offset commit: %s (tried again)",
               rd_kafka_err2str(err));
        defer_offsets(w, list);
    } else {
        w->commit_inflight = 1;
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* The answer to a commit: refused by a rebalance, or failed otherwise, its
 * offsets wait in pending_commit; through, it settles what waited there. */
static void commit_done(oe_worker *w, rd_kafka_resp_err_t err,
                        const rd_kafka_topic_partition_list_t *list)
{
    if (!list)
        return;
    if (!err) {
        if (oe_log_enabled(OE_LOG_DEBUG)) {
            char text[512];
            oe_log(OE_LOG_DEBUG, "worker", NULL, "offsets committed (%s)",
                   parts_text(list, 1, text, sizeof text));
        }
        prune_pending(w, list);
        return;
    }
    if (rebalance_error(err) && w->cfg.own_broker) {
        /* This worker is no member of the group: its broker refuses its
         * offsets only once another consumer has joined the group there,
         * and that consumer is taking the same partitions. */
        worker_fail(w,
                    "offset commit refused: another consumer joined the group on this worker's "
                    "own embedded broker",
                    "offset commit refused (%s): another consumer joined group %s on this "
                    "worker's own embedded broker and reads the same partitions; workers that "
                    "form a group need `openexec broker` or Apache Kafka",
                    rd_kafka_err2str(err), w->cfg.kafka->group_id);
        return;
    }
    char text[512];
    parts_text(list, 1, text, sizeof text);
    if (rebalance_error(err))
        oe_log(OE_LOG_INFO, "worker", NULL,
               "offset commit (%s): %s (committed after the rebalance)", text,
               rd_kafka_err2str(err));
    else
        oe_log(OE_LOG_WARN, "worker", NULL, "offset commit (%s): %s (retrying)", text,
               rd_kafka_err2str(err));
    /* Not the offsets of partitions that moved while it was on its way. */
    rd_kafka_topic_partition_list_t *keep = rd_kafka_topic_partition_list_copy(list);
    if (w->moved)
        filter_offsets(w, &keep, w->moved, 0);
    if (keep) {
        defer_offsets(w, keep);
        rd_kafka_topic_partition_list_destroy(keep);
    }
}

/* Serves the answers to commits, waiting up to wait_ms in all for the one
 * on its way (0: only what has come back), and sends the next. */
void worker_poll_commits(oe_worker *w, int wait_ms)
{
    double deadline = oe_monotonic() + wait_ms / 1000.0;
    while (w->commit_inflight) {
        int left = (int)((deadline - oe_monotonic()) * 1000);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(w->commit_q, left > 0 ? left : 0);
        if (!ev) {
            if (left > 0)
                continue;
            break;
        }
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
            w->commit_inflight = 0;
            commit_done(w, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev));
            if (w->moved) {
                rd_kafka_topic_partition_list_destroy(w->moved);
                w->moved = NULL;
            }
            send_commit(w);
        }
        rd_kafka_event_destroy(ev);
    }
    send_commit(w);
}

/* Commits the finished batch's offsets asynchronously, with any left over
 * from a commit that a rebalance refused (for the partitions still ours),
 * in order after the commits before it (send_commit). */
void worker_commit_offsets(oe_worker *w)
{
    rd_kafka_topic_partition_list_t *list = worker_batch_offsets(w);
    if (w->pending_commit) {
        merge_offsets(&w->pending_commit, list);
        rd_kafka_topic_partition_list_destroy(list);
        list = w->pending_commit;
        w->pending_commit = NULL;
        filter_offsets(w, &list, NULL, 1);
        if (!list)
            return;
    }
    merge_offsets(&w->commit_next, list);
    rd_kafka_topic_partition_list_destroy(list);
    worker_poll_commits(w, 0);
}

/* Commits offsets a rebalance refused, for the partitions still ours, every
 * 200 ms for up to PENDING_COMMIT_SECONDS (force: now, when stopping; what
 * is still refused is tried by the revoke of consumer_close). */
#define PENDING_COMMIT_SECONDS 30.0
void worker_retry_pending_commit(oe_worker *w, int force)
{
    if (!w->pending_commit || (!force && oe_monotonic() < w->next_pending_try))
        return;
    /* After the asynchronous commits sent before (in order). */
    worker_poll_commits(w, COMMIT_WAIT_MS);
    filter_offsets(w, &w->pending_commit, NULL, 1);
    worker_advance_sent(w, &w->pending_commit);
    if (!w->pending_commit)
        return;
    rd_kafka_resp_err_t err = commit_list(w, w->pending_commit);
    /* When stopping, the revoke of consumer_close tries once more. */
    if (err && rebalance_error(err) &&
        (force || oe_monotonic() - w->pending_since < PENDING_COMMIT_SECONDS)) {
        w->next_pending_try = oe_monotonic() + 0.2;
        return;
    }
    char text[512];
    parts_text(w->pending_commit, 1, text, sizeof text);
    if (err)
        not_committed(err);
    else
        oe_log(OE_LOG_INFO, "worker", NULL, "offsets committed after the rebalance (%s)", text);
    rd_kafka_topic_partition_list_destroy(w->pending_commit);
    w->pending_commit = NULL;
}
