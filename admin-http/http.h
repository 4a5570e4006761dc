/* The admin HTTP server (libmicrohttpd): health, readiness, version,
 * metrics, receipt lookup and verification, and /execute.
 *
 * Handlers are thin: they decode with the engine's decoders, call the
 * engine or the executor, and render JSON.
 */
#ifndef OE_HTTP_H
#define OE_HTTP_H

#include <stddef.h>

#include "engine/buf.h"
#include "engine/engine.h"
#include "engine/metrics.h"
#include "engine/store.h"
#include "worker/bridge.h"

#define OE_VERSION "0.1.0"

/* The answer to one /execute request: an HTTP status and a JSON body. */
typedef struct oe_http_answer {
    int status;
    oe_buf body;
} oe_http_answer;

/* Runs one /execute request body and fills the answer without Kafka
 * (`--execute local`: oe_http_execute_in_process). Used when the config has
 * no bridge. Must be thread-safe. */
typedef void (*oe_http_execute_fn)(void *ctx, const char *body, size_t len,
                                   oe_http_answer *answer);

typedef struct oe_http_config {
    const char *host;     /* bind address, e.g. "127.0.0.1" */
    int port;             /* 0 = ephemeral (tests read it back) */
    unsigned threads;     /* libmicrohttpd thread pool size */
    oe_engine *engine;    /* for /health (mode, allow-list) */
    oe_store *reader;     /* read-only store for /receipts/{id} */
    oe_metrics *metrics;  /* shared counters */
    oe_bridge *bridge;    /* /execute through Kafka; NULL: use execute below */
    oe_http_execute_fn execute;
    void *execute_ctx;
    int (*ready)(void *ctx, char *reason, size_t len); /* 1 when ready */
    void *ready_ctx;
} oe_http_config;

typedef struct oe_http oe_http;

/* Starts serving. The config's pointers are borrowed and must outlive the
 * server. Returns 0 or -1 with a reason in err. */
int oe_http_start(const oe_http_config *cfg, oe_http **out, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
int oe_http_port(const oe_http *h);

/* Stops accepting connections and waits up to max_ms for the open ones to
 * finish (answers already on their way are sent). NULL is allowed. */
void oe_http_quiesce(oe_http *h, int max_ms);

/* Stops serving and frees the server. NULL is allowed. */
void oe_http_stop(oe_http *h);

/* Context of the in-process executor: the engine and the metrics. */
typedef struct oe_local_executor {
    oe_engine *engine;
    oe_metrics *metrics;
} oe_local_executor;

/* Executes in this process through the engine (ctx is an oe_local_executor). */
void oe_http_execute_in_process(void *ctx, const char *body, size_t len, oe_http_answer *answer);

/* Renders a receipt from the receipts topic as SPEC §10's /execute answer. */
void oe_http_answer_from_receipt(const oe_receipt *r, oe_http_answer *answer);

/* Renders an outcome as SPEC §10's /execute answer. */
void oe_http_answer_from_outcome(const oe_request *req, const oe_outcome *o,
                                 oe_http_answer *answer);

#endif
