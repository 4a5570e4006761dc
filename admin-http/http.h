/* The admin HTTP server (libmicrohttpd): health, readiness, version,
 * metrics, receipt lookup and verification, and /execute.
 *
 * Handlers are thin: they decode with the engine's decoders, call the
 * engine or the executor, and render JSON.
 *
 * Lifecycle: oe_http_new (validate, resolve and bind: a port in use is
 * reported before anything else starts) -> oe_http_start (serve) ->
 * oe_http_stop (stop accepting, let answers go out, stop) -> oe_http_free.
 */
#ifndef OE_HTTP_H
#define OE_HTTP_H

#include <stddef.h>

#include "bridge/bridge.h"
#include "engine/buf.h"
#include "engine/engine.h"
#include "engine/metrics.h"
#include "engine/status.h"
#include "engine/store.h"
#include "kafka/kafka_metrics.h"

#define OE_VERSION "0.1.0"

/* The commit this binary was built from (short hash, "+changes" when the
 * tree had uncommitted changes, "unknown" without git) and that commit's
 * date (ISO 8601), written by make (build/gen/build_info.c). */
extern const char oe_build_commit[];
extern const char oe_build_date[];
/* The avro-c release built against (the library reports none itself). */
extern const char oe_build_avro[];

/* The version of libmicrohttpd linked in. */
const char *oe_http_library_version(void);

/* The server's own metrics (engine/metrics.h), in the order rendered after
 * the engine's and the Kafka side's. */
extern const oe_metric_def oe_http_metrics_registry[];
extern const size_t oe_http_metrics_registry_count;

/* The server's limits. Each one bounds what a client (or many clients) can
 * make the server hold; all are enforced in http.c.
 *
 * Connections: at most OE_HTTP_MAX_CONNECTIONS at once, fewer when the
 * process's descriptor limit (RLIMIT_NOFILE) minus OE_HTTP_FD_RESERVE (kept
 * for the ledger, Kafka and logs) is smaller, and at most
 * OE_HTTP_PER_IP_CONNECTIONS from one client address, so that one host
 * cannot take every slot. */
#define OE_HTTP_MAX_CONNECTIONS 4096u
#define OE_HTTP_FD_RESERVE 256u
#define OE_HTTP_PER_IP_CONNECTIONS 512u
#define OE_HTTP_LISTEN_BACKLOG 1024
/* Time limits. libmicrohttpd's own timeout counts only silence, so a client
 * sending a header line every few seconds would hold its connection
 * forever; the deadlines count from the start of each phase: the request
 * line and headers (also the wait for the next request on a kept-alive
 * connection), then the body. The answer itself has no deadline beyond the
 * idle timeout (a receipt may take long: the bridge has its own timeout). */
#define OE_HTTP_IDLE_TIMEOUT_S 30u
#define OE_HTTP_HEADER_DEADLINE_MS 10000
#define OE_HTTP_BODY_DEADLINE_MS 30000
/* Buffered request bodies: at most OE_HTTP_BODY_BUDGET bytes across all
 * connections; bodies up to OE_HTTP_SMALL_BODY may use a further
 * OE_HTTP_SMALL_BODY_RESERVE, so that ordinary requests still pass while
 * large uploads fill the budget. A body that does not fit is answered 503. */
#define OE_HTTP_BODY_BUDGET ((size_t)64 << 20)
#define OE_HTTP_SMALL_BODY ((size_t)64 << 10)
#define OE_HTTP_SMALL_BODY_RESERVE ((size_t)8 << 20)
/* One client address holds at most this much of the budget (addresses are
 * hashed into OE_HTTP_ADDRESS_BUCKETS counters; two addresses that share a
 * counter share the limit). Budget is taken as body bytes arrive, not when
 * a Content-Length is announced, so a connection that sends nothing holds
 * nothing: one address cannot block every other client's /execute. */
#define OE_HTTP_BODY_PER_ADDRESS (OE_HTTP_BODY_BUDGET / 8)
#define OE_HTTP_ADDRESS_BUCKETS 4096
/* Largest answer body; an answer that would be larger is replaced by a 500
 * (never sent truncated). */
#define OE_HTTP_MAX_ANSWER ((size_t)16 << 20)
/* How long oe_http_stop lets answers already on their way go out. */
#define OE_HTTP_STOP_GRACE_MS 1000

/* The answer to one /execute request: an HTTP status and a JSON body.
 * The body's cap (oe_buf max) bounds the answer; a renderer that passes it
 * leaves status 500 and a short fixed detail instead. */
typedef struct oe_http_answer {
    int status;
    oe_buf body;
} oe_http_answer;

typedef struct oe_http_config {
    const char *host;    /* bind address or host name: "127.0.0.1", "::1", "localhost" */
    int port;            /* 0 = ephemeral (tests read it back) */
    unsigned threads;    /* libmicrohttpd thread pool size */
    oe_engine *engine;   /* for /health (mode, allow-list) */
    oe_store *reader;    /* read-only store for /receipts/{id} */
    oe_metrics *metrics; /* the engine's counters */
    oe_kafka_metrics *kafka_metrics; /* the worker's and bridge's, NULL without Kafka */
    oe_bridge *bridge;               /* /execute through Kafka; NULL: the executor */
    /* /execute in this process (`--execute local`): requests are queued
     * with the executor (started; it must outlive the server), which
     * runs those that arrive together as one batch (group commit); each is
     * answered after its batch's commit. */
    struct oe_executor *executor;
    int (*ready)(void *ctx, char *reason, size_t len); /* 1 when ready */
    void *ready_ctx;
    /* Signed receipts: the public keys POST /receipts/verify trusts
     * (borrowed); none: a whole receipt is answered invalid. */
    const unsigned char (*trusted)[32];
    size_t ntrusted;
} oe_http_config;

typedef struct oe_http oe_http;

/* Validates the config, resolves the host (names and IPv6 literals too) and
 * binds and listens on the first address that works, without serving yet.
 * The config is copied; its pointers are borrowed and must outlive the
 * server. Returns OE_OK and the server in *out, or OE_EINVAL (bad config or
 * host), OE_EIO (cannot bind, e.g. "cannot listen on 127.0.0.1:5000:
 * Address already in use") or OE_ENOMEM with a reason in err. */
oe_rc oe_http_new(const oe_http_config *cfg, oe_http **out, char *err, size_t errlen);

/* Sets the /execute bridge, which may be created after oe_http_new bound the
 * port (the bridge needs the brokers). Call before oe_http_start. */
void oe_http_set_bridge(oe_http *h, oe_bridge *bridge);

/* Starts serving on the socket bound by oe_http_new (it is handed over to
 * libmicrohttpd). Returns OE_OK, or an error with a reason in err; after a
 * failure only oe_http_free is allowed. */
oe_rc oe_http_start(oe_http *h, char *err, size_t errlen);

/* The port actually bound (useful with port 0); known after oe_http_new. */
int oe_http_port(const oe_http *h);

/* Stops accepting connections, waits up to OE_HTTP_STOP_GRACE_MS for the
 * open ones to finish (answers already on their way are sent), then stops
 * serving. NULL, a server never started and a second call are allowed. */
void oe_http_stop(oe_http *h);

/* Stops the server if it is running and frees it. NULL is allowed. */
void oe_http_free(oe_http *h);

/* Renders a receipt from the receipts topic as docs/protocol.md §7's /execute answer.
 * The receipt's result text is parsed first: one that is not valid JSON is
 * answered 502 {"detail": "receipt carries an invalid result"}. */
void oe_http_answer_from_receipt(const oe_receipt *r, oe_http_answer *answer);

/* Renders an outcome as docs/protocol.md §7's /execute answer. */
void oe_http_answer_from_outcome(const oe_request *req, const oe_outcome *o,
                                 oe_http_answer *answer);

#endif
