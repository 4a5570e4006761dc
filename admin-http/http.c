/* The admin HTTP server (http.h) on libmicrohttpd: routing, rendering, and
 * the limits that keep one client from taking the server down.
 *
 * Threads: libmicrohttpd's pool threads run the access handler and the
 * connection notifications; our deadline thread (sweeper_main) shuts down
 * connections that take too long to send their headers or body; the
 * bridge's thread, or the executor's (local /execute: local_done), fills a
 * suspended request's answer and resumes it. They share only the
 * connection registry (under conns_lock), the body budget, the count of
 * requests with the executor (jobs_lock) and the counters (atomics);
 * everything else belongs to the one thread serving a connection at a
 * time.
 *
 * Ownership: oe_http owns its listening socket until oe_http_start hands it
 * to libmicrohttpd (and again after quiescing, until it is closed in
 * oe_http_stop). A conn_rec lives from libmicrohttpd's "started" to its
 * "closed" notification. A request_ctx lives from the first handler call of
 * a request to the "completed" notification and owns the request body (and
 * its share of the body budget) and the answer. Every answer body is built
 * in a capped oe_buf and checked with oe_buf_failed before it is sent.
 */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/actions.h"
#include "engine/approval.h"
#include "engine/clock.h"
#include "engine/executor.h"
#include "engine/ids.h"
#include "engine/json.h"
#include "engine/log.h"
#include "engine/lua_actions.h"
#include "engine/proofs.h"
#include "engine/request.h"
#include "engine/status.h"
#include "engine/tlog.h"

/* libmicrohttpd changed its handler return type from int to enum MHD_Result
 * in 0.9.71; this keeps the handlers portable across both. */
#if MHD_VERSION >= 0x00097002
#define MHD_RESULT enum MHD_Result
#else
#define MHD_RESULT int
#endif

/* Largest request body (docs/protocol.md §7), enforced while it arrives. */
#define OE_HTTP_MAX_BODY OE_REQUEST_MAX_BYTES
/* A body of unannounced size is drained up to this much before the
 * connection is closed without an answer. */
#define OE_HTTP_DRAIN_LIMIT ((size_t)8 << 20)
/* How often the deadline thread looks at the connections. */
#define OE_HTTP_SWEEP_MS 250
/* Results are validated with room for actions that nest their payload. */
#define OE_HTTP_RESULT_MAX_DEPTH (2 * OE_JSON_MAX_DEPTH)

/* Sent when an answer could not be rendered (its cap or memory ran out):
 * small and static, so that sending it cannot fail the same way. */
static const char answer_failed_body[] =
    "{\"detail\": \"the answer could not be rendered (too large or out of memory)\"}";

/* What a connection is doing, for the deadlines. */
typedef enum conn_phase {
    PHASE_HEADERS, /* receiving the request line and headers, or idle between requests */
    PHASE_BODY,    /* headers complete, receiving the body */
    PHASE_HANDLING /* the request is complete: executing or answering */
} conn_phase;

/* The routes: path, allowed method, and whether a body is read. */
typedef enum {
    R_ROOT,
    R_HEALTH,
    R_READY,
    R_VERSION,
    R_METRICS,
    R_EXECUTE,
    R_VERIFY,
    R_RECEIPT,
    R_RECEIPT_BY_NONCE,
    R_OPENAPI,
    R_LOG_CHECKPOINT,
    R_LOG_CONSISTENCY,
    R_RECEIPT_PROOF,
    R_NONE
} route;

/* The route labels of openexec_http_requests_total, by route. */
static const char *const route_labels[R_NONE + 1] = {
    [R_ROOT] = "/",
    [R_HEALTH] = "/health",
    [R_READY] = "/ready",
    [R_VERSION] = "/version",
    [R_METRICS] = "/metrics",
    [R_EXECUTE] = "/execute",
    [R_VERIFY] = "/receipts/verify",
    [R_RECEIPT] = "/receipts/{id}",
    [R_RECEIPT_BY_NONCE] = "/receipts",
    [R_OPENAPI] = "/openapi.json",
    [R_LOG_CHECKPOINT] = "/log/{origin}/checkpoint",
    [R_LOG_CONSISTENCY] = "/log/{origin}/consistency",
    [R_RECEIPT_PROOF] = "/receipts/{id}/proof",
    [R_NONE] = "other",
};

/* The status codes counted one by one; the rest count as "other". */
static const int counted_codes[] = {200, 400, 403, 404, 405, 409, 413, 422, 431, 500, 503, 504};
#define N_CODES (sizeof counted_codes / sizeof counted_codes[0] + 1)

/* One open connection, registered while libmicrohttpd holds it. */
typedef struct conn_rec {
    struct conn_rec *prev, *next; /* the registry list, under conns_lock */
    int fd;                       /* the client socket (libmicrohttpd's) */
    atomic_int phase;             /* conn_phase */
    atomic_llong since_ms;        /* monotonic ms when the phase began */
    int shut;                     /* the deadline thread shut it down (conns_lock) */
    atomic_int route;             /* of the request in hand, for the counters */
} conn_rec;

struct oe_http {
    struct MHD_Daemon *daemon; /* NULL until started and after stopped */
    oe_http_config cfg;        /* copied; its pointers are borrowed */
    int port;                  /* the port bound */
    int ipv6;                  /* the listening socket is IPv6 */
    MHD_socket listen_fd;      /* ours before start and after quiesce */
    unsigned connection_limit; /* OE_HTTP_MAX_CONNECTIONS or fewer (descriptors) */

    pthread_mutex_t conns_lock; /* guards conns, shut flags and sweeper_stop */
    pthread_cond_t sweeper_wake;
    conn_rec *conns; /* every open connection with a known socket */
    pthread_t sweeper;
    int sweeper_running;
    int sweeper_stop;

    atomic_size_t body_bytes;                             /* body budget in use, bytes */
    atomic_size_t address_bytes[OE_HTTP_ADDRESS_BUCKETS]; /* by hashed client address */
    atomic_ullong budget_refused;                         /* requests refused for the budget */
    atomic_ullong deadline_closed[2];            /* connections shut: [0] headers, [1] body */
    atomic_ullong framing_refused;               /* requests refused for ambiguous framing */
    atomic_ullong responses[6];                  /* by status class: 1xx..5xx, index 1..5 */
    atomic_ullong by_route[R_NONE + 1][N_CODES]; /* by route and status code */

    /* /execute without a bridge: each request is decoded on its
     * connection's thread and queued with the executor (group commit),
     * its connection suspended until the job's done resumes it. inflight
     * counts those jobs, so that oe_http_stop lets them finish before the
     * daemon frees their contexts. */
    pthread_mutex_t jobs_lock; /* guards inflight and jobs_stop */
    pthread_cond_t jobs_idle;
    size_t inflight;
    int jobs_stop;
};

/* Per-request state, created on the first call of the handler. */
typedef struct request_ctx {
    struct MHD_Connection *connection;
    conn_rec *conn; /* the connection's record, or NULL */
    oe_buf body;
    size_t reserved;       /* bytes of the body budget held */
    size_t bucket;         /* the client address's counter in address_bytes */
    oe_http_answer answer; /* filled by the bridge's reply */
    atomic_int replied;    /* the answer is ready */
    int submitted;         /* handed to the bridge, connection suspended */
    int refuse_status;     /* drain the body, then answer this (413, 503) */
    const char *refuse_detail;
    int answered;         /* a response is already queued */
    size_t received;      /* body bytes seen, kept or not */
    oe_exec_job job;      /* /execute without a bridge: the decoded request */
    char job_detail[256]; /* the decoder's reason, when it rejected the request */
    oe_http *server;      /* for the job's done */
} request_ctx;

/* ------------------------------------------------------------------------
 * Deadlines: the registry of connections and the thread that enforces them.
 */

static void conn_set_phase(conn_rec *r, conn_phase phase)
{
    if (!r)
        return;
    /* The time first: a reader that sees the new phase sees its start. */
    atomic_store(&r->since_ms, oe_monotonic_ms());
    atomic_store(&r->phase, (int)phase);
}

static conn_rec *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* libmicrohttpd reports each connection's start and end. The record is
 * removed before libmicrohttpd closes the socket (it notifies first), so a
 * socket the deadline thread finds in the registry is still this
 * connection's. */
static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    oe_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_rec *r = ci ? calloc(1, sizeof *r) : NULL;
        if (!r)
            return; /* no deadline for this one; the idle timeout still holds */
        r->fd = ci->connect_fd;
        atomic_init(&r->route, R_NONE);
        conn_set_phase(r, PHASE_HEADERS);
        pthread_mutex_lock(&h->conns_lock);
        r->next = h->conns;
        if (h->conns)
            h->conns->prev = r;
        h->conns = r;
        pthread_mutex_unlock(&h->conns_lock);
        *socket_context = r;
        return;
    }
    conn_rec *r = *socket_context;
    if (!r)
        return;
    pthread_mutex_lock(&h->conns_lock);
    if (r->prev)
        r->prev->next = r->next;
    else
        h->conns = r->next;
    if (r->next)
        r->next->prev = r->prev;
    pthread_mutex_unlock(&h->conns_lock);
    free(r);
    *socket_context = NULL;
}

/* Shuts down the sockets of connections past their phase's deadline.
 * libmicrohttpd then reads end-of-file and closes the connection itself
 * (it offers no call to close a connection from another thread). */
static void *sweeper_main(void *arg)
{
    oe_http *h = arg;
    pthread_mutex_lock(&h->conns_lock);
    while (!h->sweeper_stop) {
        struct timespec until = oe_monotonic_after_ms(OE_HTTP_SWEEP_MS);
        pthread_cond_timedwait(&h->sweeper_wake, &h->conns_lock, &until);
        long long now = oe_monotonic_ms();
        for (conn_rec *r = h->conns; r && !h->sweeper_stop; r = r->next) {
            if (r->shut)
                continue;
            int phase = atomic_load(&r->phase);
            long long age = now - atomic_load(&r->since_ms);
            if ((phase == PHASE_HEADERS && age > OE_HTTP_HEADER_DEADLINE_MS) ||
                (phase == PHASE_BODY && age > OE_HTTP_BODY_DEADLINE_MS)) {
                shutdown(r->fd, SHUT_RDWR);
                r->shut = 1;
                atomic_fetch_add(&h->deadline_closed[phase == PHASE_BODY], 1);
            }
        }
    }
    pthread_mutex_unlock(&h->conns_lock);
    return NULL;
}

static void sweeper_stop(oe_http *h)
{
    if (!h->sweeper_running)
        return;
    pthread_mutex_lock(&h->conns_lock);
    h->sweeper_stop = 1;
    pthread_cond_signal(&h->sweeper_wake);
    pthread_mutex_unlock(&h->conns_lock);
    pthread_join(h->sweeper, NULL);
    h->sweeper_running = 0;
}

/* ------------------------------------------------------------------------
 * The body budget.
 */

/* The counter of the connection's client address (FNV-1a of its IP). */
static size_t address_bucket(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const unsigned char *p = NULL;
    size_t n = 0;
    if (info && info->client_addr && info->client_addr->sa_family == AF_INET) {
        p = (const unsigned char *)&((const struct sockaddr_in *)info->client_addr)->sin_addr;
        n = 4;
    } else if (info && info->client_addr && info->client_addr->sa_family == AF_INET6) {
        p = (const unsigned char *)&((const struct sockaddr_in6 *)info->client_addr)->sin6_addr;
        n = 16;
    }
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < n; i++)
        hash = (hash ^ p[i]) * 16777619u;
    return hash % OE_HTTP_ADDRESS_BUCKETS;
}

/* Reserves budget for the request's body to grow to total bytes: within the
 * global budget and the client address's share. Returns OE_OK, or
 * OE_ELIMIT when either is spent (nothing is reserved then). */
static int body_reserve(oe_http *h, request_ctx *ctx, size_t total)
{
    if (total <= ctx->reserved)
        return 0;
    size_t more = total - ctx->reserved;
    size_t limit = total <= OE_HTTP_SMALL_BODY ? OE_HTTP_BODY_BUDGET + OE_HTTP_SMALL_BODY_RESERVE
                                               : OE_HTTP_BODY_BUDGET;
    atomic_size_t *mine = &h->address_bytes[ctx->bucket];
    size_t before = atomic_fetch_add(&h->body_bytes, more);
    size_t mine_before = atomic_fetch_add(mine, more);
    if (before + more > limit || mine_before + more > OE_HTTP_BODY_PER_ADDRESS) {
        atomic_fetch_sub(&h->body_bytes, more);
        atomic_fetch_sub(mine, more);
        atomic_fetch_add(&h->budget_refused, 1);
        return OE_ELIMIT;
    }
    ctx->reserved = total;
    return OE_OK;
}

/* Frees the request's body and gives its budget back. */
static void body_release(oe_http *h, request_ctx *ctx)
{
    oe_buf_free(&ctx->body);
    if (ctx->reserved) {
        atomic_fetch_sub(&h->body_bytes, ctx->reserved);
        atomic_fetch_sub(&h->address_bytes[ctx->bucket], ctx->reserved);
        ctx->reserved = 0;
    }
}

/* ------------------------------------------------------------------------
 * Sending answers. Every path ends in send_json with text that is complete.
 */

static conn_rec *conn_of(struct MHD_Connection *c);

static void count_response(oe_http *h, struct MHD_Connection *c, int status)
{
    if (status >= 100 && status < 600)
        atomic_fetch_add(&h->responses[status / 100], 1);
    conn_rec *rec = conn_of(c);
    int r = rec ? atomic_load(&rec->route) : R_NONE;
    size_t k = 0;
    while (k < N_CODES - 1 && counted_codes[k] != status)
        k++;
    atomic_fetch_add(&h->by_route[r >= 0 && r <= R_NONE ? r : R_NONE][k], 1);
}

/* Queues a response of the given type; the body is copied. close_after
 * adds "Connection: close" (libmicrohttpd then closes after sending). */
static MHD_RESULT send_typed(oe_http *h, struct MHD_Connection *c, int status, const char *type,
                             const char *body, size_t len, int close_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
        (close_after &&
         MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    MHD_RESULT ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    count_response(h, c, status);
    return ret;
}

/* A JSON response (send_typed). */
static MHD_RESULT send_json_ex(oe_http *h, struct MHD_Connection *c, int status, const char *body,
                               size_t len, int close_after)
{
    return send_typed(h, c, status, "application/json", body, len, close_after);
}

static MHD_RESULT send_json(oe_http *h, struct MHD_Connection *c, int status, const char *body,
                            size_t len)
{
    return send_json_ex(h, c, status, body, len, 0);
}

/* Sends a rendered buffer, or the fixed 500 when its rendering failed. */
static MHD_RESULT send_buf(oe_http *h, struct MHD_Connection *c, int status, const oe_buf *b)
{
    if (oe_buf_failed(b) || !b->data)
        return send_json(h, c, 500, answer_failed_body, sizeof answer_failed_body - 1);
    return send_json(h, c, status, b->data, b->len);
}

static int put_detail(oe_buf *b, const char *detail)
{
    oe_buf_puts(b, "{\"detail\": ");
    oe_json_dump_string(b, detail, strlen(detail));
    return oe_buf_putc(b, '}');
}

/* {"detail": reason} with the given status. */
static MHD_RESULT send_detail_ex(oe_http *h, struct MHD_Connection *c, int status,
                                 const char *detail, int close_after)
{
    oe_buf b;
    oe_buf_init(&b, OE_HTTP_MAX_ANSWER);
    put_detail(&b, detail);
    MHD_RESULT ret = oe_buf_failed(&b)
                         ? send_json(h, c, 500, answer_failed_body, sizeof answer_failed_body - 1)
                         : send_json_ex(h, c, status, b.data, b.len, close_after);
    oe_buf_free(&b);
    return ret;
}

static MHD_RESULT send_detail(oe_http *h, struct MHD_Connection *c, int status, const char *detail)
{
    return send_detail_ex(h, c, status, detail, 0);
}

static MHD_RESULT send_method_not_allowed(oe_http *h, struct MHD_Connection *c, const char *allow)
{
    static const char body[] = "{\"detail\": \"Method Not Allowed\"}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    MHD_RESULT ret = MHD_queue_response(c, 405, r);
    MHD_destroy_response(r);
    count_response(h, c, 405);
    return ret;
}

/* Appends "key": "value" (or null). Failures stick to the buffer. */
static void put_key_string(oe_buf *b, const char *key, const char *value)
{
    oe_json_dump_string(b, key, strlen(key));
    oe_buf_puts(b, ": ");
    if (value)
        oe_json_dump_string(b, value, strlen(value));
    else
        oe_buf_puts(b, "null");
}

/* {"key": false, "reason": reason} with the given status. */
static MHD_RESULT send_false(oe_http *h, struct MHD_Connection *c, int status, const char *key,
                             const char *reason)
{
    oe_buf b;
    oe_buf_init(&b, OE_HTTP_MAX_ANSWER);
    oe_buf_printf(&b, "{\"%s\": false, ", key);
    put_key_string(&b, "reason", reason);
    oe_buf_putc(&b, '}');
    MHD_RESULT ret = send_buf(h, c, status, &b);
    oe_buf_free(&b);
    return ret;
}

/* 1 when text is one valid JSON value (the engine's strict parser). */
static int json_valid(const char *text, size_t len)
{
    char err[160];
    oe_json_doc *doc;
    int rc = oe_json_parse(text, len, OE_HTTP_RESULT_MAX_DEPTH, &doc, err, sizeof err);
    oe_json_doc_free(doc);
    return rc == OE_OK;
}

/* ------------------------------------------------------------------------
 * Handlers and renderers.
 */

/* GET / */
static MHD_RESULT handle_root(oe_http *h, struct MHD_Connection *c)
{
    static const char body[] =
        "{\"service\": \"OpenExec\", \"status\": \"running\", \"version\": \"" OE_VERSION "\"}";
    return send_json(h, c, 200, body, sizeof body - 1);
}

/* The OpenAPI 3.1 description of these routes, admin-http/openapi.json
 * compiled in by make (build/gen/schemas.c). */
extern const char oe_openapi_json[];

/* GET /openapi.json: the document byte for byte. */
static MHD_RESULT handle_openapi(oe_http *h, struct MHD_Connection *c)
{
    return send_json(h, c, 200, oe_openapi_json, strlen(oe_openapi_json));
}

/* GET /health: mode, signature verification, the allow-list as configured
 * (or a warning that every registered action is permitted) and the
 * approval keys: Ed25519 key ids, and HMAC secrets only counted (docs/protocol.md §7:
 * not even a hash of a secret, which could be guessed offline). */
static MHD_RESULT handle_health(oe_http *h, struct MHD_Connection *c)
{
    oe_engine *e = h->cfg.engine;
    const char *mode = oe_engine_clawshield(e) ? "clawshield" : "demo";
    oe_buf b;
    oe_buf_init(&b, OE_HTTP_MAX_ANSWER);
    oe_buf_puts(&b, "{\"status\": \"healthy\", ");
    put_key_string(&b, "mode", mode);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "exec_mode", mode);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "signature_verification",
                   oe_engine_signature_verification(e) ? "enabled" : "disabled");
    oe_buf_puts(&b, ", ");
    const char *const *names;
    oe_engine_actions_read(e, 1); /* a reload waits until they are written */
    size_t n = oe_engine_allow_list(e, &names);
    if (n) {
        put_key_string(&b, "restriction", "restricted");
        oe_buf_puts(&b, ", \"allow_list\": [");
        for (size_t k = 0; k < n; k++) {
            if (k)
                oe_buf_puts(&b, ", ");
            oe_json_dump_string(&b, names[k], strlen(names[k]));
        }
        oe_buf_putc(&b, ']');
    } else {
        put_key_string(&b, "restriction", "open");
        oe_buf_puts(&b, ", ");
        put_key_string(&b, "warning", "No execution allow-list configured");
    }
    /* Every action: name -> code hash (null for a built-in). */
    const oe_lua_actions *lua;
    size_t total = oe_engine_actions(e, &names, &lua), builtins = total - oe_lua_actions_count(lua);
    oe_buf_puts(&b, ", \"actions\": {");
    for (size_t k = 0; k < total; k++) {
        if (k)
            oe_buf_puts(&b, ", ");
        put_key_string(&b, names[k],
                       k < builtins ? NULL : oe_lua_action_code_hash(lua, k - builtins));
    }
    oe_buf_putc(&b, '}');
    oe_engine_actions_read(e, 0);
    const oe_approval_keys *keys = oe_engine_approval_keys(e);
    oe_buf_puts(&b, ", \"approval_keys\": {\"ed25519\": [");
    for (size_t k = 0; k < oe_approval_keys_ed25519_count(keys); k++) {
        if (k)
            oe_buf_puts(&b, ", ");
        const char *id = oe_approval_keys_ed25519_id(keys, k);
        oe_json_dump_string(&b, id, strlen(id));
    }
    oe_buf_printf(&b, "], \"hmac_secrets\": %zu}, ", oe_approval_keys_hmac_count(keys));
    put_key_string(&b, "version", OE_VERSION);
    oe_buf_putc(&b, '}');
    MHD_RESULT ret = send_buf(h, c, 200, &b);
    oe_buf_free(&b);
    return ret;
}

static int is_ready(oe_http *h, char *reason, size_t len)
{
    if (!h->cfg.ready) {
        snprintf(reason, len, "ok");
        return 1;
    }
    return h->cfg.ready(h->cfg.ready_ctx, reason, len);
}

/* GET /ready */
static MHD_RESULT handle_ready(oe_http *h, struct MHD_Connection *c)
{
    char reason[200];
    if (is_ready(h, reason, sizeof reason)) {
        static const char body[] = "{\"ready\": true}";
        return send_json(h, c, 200, body, sizeof body - 1);
    }
    return send_false(h, c, 503, "ready", reason);
}

/* GET /version */
static MHD_RESULT handle_version(oe_http *h, struct MHD_Connection *c)
{
    char ts[64], body[400];
    oe_time_format_iso8601(oe_wall_clock(), ts, sizeof ts);
    int n = snprintf(body, sizeof body,
                     "{\"version\": \"%s\", \"timestamp\": \"%s\", \"commit\": \"%.64s\", "
                     "\"commit_date\": \"%.64s\"}",
                     OE_VERSION, ts, oe_build_commit, oe_build_date);
    if (n < 0 || (size_t)n >= sizeof body)
        return send_json(h, c, 500, answer_failed_body, sizeof answer_failed_body - 1);
    return send_json(h, c, 200, body, (size_t)n);
}

/* The server's registry, by the index its renderer uses. */
enum {
    H_RESPONSES,
    H_REQUESTS,
    H_DEADLINE_CLOSED,
    H_BUDGET_REFUSED,
    H_BODY_BYTES,
    H_FRAMING_REFUSED,
    H_COUNT
};

const oe_metric_def oe_http_metrics_registry[H_COUNT] = {
    [H_RESPONSES] = {"openexec_http_responses_total", OE_METRIC_COUNTER, "code",
                     "HTTP responses, by status class."},
    [H_REQUESTS] = {"openexec_http_requests_total", OE_METRIC_COUNTER, "route,code",
                    "HTTP responses, by route and status code."},
    [H_DEADLINE_CLOSED] = {"openexec_http_deadline_closed_total", OE_METRIC_COUNTER, "phase",
                           "Connections closed for not sending their headers or body in time, by "
                           "phase."},
    [H_BUDGET_REFUSED] = {"openexec_http_body_budget_refused_total", OE_METRIC_COUNTER, "",
                          "Requests refused because the buffered request bodies reached their "
                          "budget."},
    [H_BODY_BYTES] = {"openexec_http_body_bytes", OE_METRIC_GAUGE, "",
                      "Request body bytes buffered now."},
    [H_FRAMING_REFUSED] = {"openexec_http_framing_refused_total", OE_METRIC_COUNTER, "",
                           "Requests refused for ambiguous framing (Content-Length and "
                           "Transfer-Encoding)."},
};
const size_t oe_http_metrics_registry_count = H_COUNT;

/* The server's own counters, after the shared ones (Prometheus text). */
static void render_http_metrics(oe_http *h, oe_buf *b)
{
    const oe_metric_def *d = oe_http_metrics_registry;
    oe_metric_header(b, &d[H_RESPONSES]);
    for (int k = 1; k <= 5; k++)
        oe_buf_printf(b, "%s{code=\"%dxx\"} %llu\n", d[H_RESPONSES].name, k,
                      atomic_load(&h->responses[k]));
    /* By route and code, so that a dashboard tells /ready's 503s while
     * starting from errors of /execute. Series appear once counted. */
    oe_metric_header(b, &d[H_REQUESTS]);
    for (int r = 0; r <= R_NONE; r++)
        for (size_t k = 0; k < N_CODES; k++) {
            unsigned long long n = atomic_load(&h->by_route[r][k]);
            char code[8];
            if (k < N_CODES - 1)
                snprintf(code, sizeof code, "%d", counted_codes[k]);
            else
                snprintf(code, sizeof code, "other");
            if (n)
                oe_buf_printf(b, "%s{route=\"%s\",code=\"%s\"} %llu\n", d[H_REQUESTS].name,
                              route_labels[r], code, n);
        }
    oe_metric_header(b, &d[H_DEADLINE_CLOSED]);
    oe_buf_printf(b, "%s{phase=\"headers\"} %llu\n%s{phase=\"body\"} %llu\n",
                  d[H_DEADLINE_CLOSED].name, atomic_load(&h->deadline_closed[0]),
                  d[H_DEADLINE_CLOSED].name, atomic_load(&h->deadline_closed[1]));
    oe_metric_single(b, &d[H_BUDGET_REFUSED], (long long)atomic_load(&h->budget_refused));
    oe_metric_single(b, &d[H_BODY_BYTES], (long long)atomic_load(&h->body_bytes));
    oe_metric_single(b, &d[H_FRAMING_REFUSED], (long long)atomic_load(&h->framing_refused));
}

/* GET /metrics: Prometheus text format. */
static MHD_RESULT handle_metrics(oe_http *h, struct MHD_Connection *c)
{
    char reason[200];
    oe_buf b;
    oe_buf_init(&b, OE_HTTP_MAX_ANSWER);
    oe_metrics_render(h->cfg.metrics, is_ready(h, reason, sizeof reason), OE_VERSION, &b);
    if (h->cfg.kafka_metrics)
        oe_kafka_metrics_render(h->cfg.kafka_metrics, &b);
    render_http_metrics(h, &b);
    if (oe_buf_failed(&b) || !b.data) {
        oe_buf_free(&b);
        return send_json(h, c, 500, answer_failed_body, sizeof answer_failed_body - 1);
    }
    MHD_RESULT ret = send_typed(h, c, 200, "text/plain; version=0.0.4", b.data, b.len, 0);
    oe_buf_free(&b);
    return ret;
}

/* The answer becomes {"detail": detail} with the status. */
static void answer_detail(oe_http_answer *a, int status, const char *detail)
{
    a->status = status;
    oe_buf_reset(&a->body);
    put_detail(&a->body, detail);
}

/* Replaces an answer whose rendering failed by the fixed 500. If even that
 * does not fit the cap the buffer stays failed, and the sender falls back
 * to the same text (send_buf). */
static void answer_check(oe_http_answer *a)
{
    if (!oe_buf_failed(&a->body))
        return;
    a->status = 500;
    oe_buf_reset(&a->body);
    oe_buf_puts(&a->body, answer_failed_body);
}

/* The answer of a rejection the engine recorded: {"detail": detail} with
 * the status and, when the writer signs, the entry's proof (docs/protocol.md §8):
 * {"detail", "proof"}. */
static void answer_rejection(oe_http_answer *a, int status, const char *detail, const char *proof)
{
    if (!proof) {
        answer_detail(a, status, detail);
    } else {
        a->status = status;
        oe_buf_reset(&a->body);
        oe_buf_puts(&a->body, "{\"detail\": ");
        oe_json_dump_string(&a->body, detail, strlen(detail));
        oe_buf_puts(&a->body, ", \"proof\": ");
        oe_buf_puts(&a->body, proof);
        oe_buf_putc(&a->body, '}');
    }
    answer_check(a);
}

/* The fields of a receipt an /execute answer of an execution carries. */
typedef struct answer_fields {
    const char *id, *nonce, *action, *request_hash;
    const char *result; /* the result_json text */
    size_t result_len;
    int approved;
    const char *receipt, *approval_id, *proof;
    const char *action_code_hash; /* NULL: a built-in action */
    oe_status status;
} answer_fields;

/* The /execute answer of an execution (docs/protocol.md §7), one renderer for both
 * sources: the seed's {"id", "action", "result" (the JSON text pasted as a
 * value), "approved", "receipt"}, then the rest of the receipt's fields as
 * every channel names them ("status", "nonce", "request_hash",
 * "result_json", "error_code", "detail", "approval_id", "action_code_hash",
 * "proof"). */
static void answer_execution(oe_http_answer *a, const answer_fields *f)
{
    a->status = 200;
    oe_buf_reset(&a->body);
    oe_buf_puts(&a->body, "{");
    put_key_string(&a->body, "id", f->id);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "action", f->action);
    oe_buf_puts(&a->body, ", \"result\": ");
    oe_buf_append(&a->body, f->result, f->result_len);
    oe_buf_printf(&a->body, ", \"approved\": %s, ", f->approved ? "true" : "false");
    put_key_string(&a->body, "receipt", f->receipt);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "status", oe_status_name(f->status));
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "nonce", f->nonce);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "request_hash", f->request_hash);
    oe_buf_puts(&a->body, ", \"result_json\": ");
    oe_json_dump_string(&a->body, f->result, f->result_len);
    oe_buf_puts(&a->body, ", \"error_code\": null, \"detail\": null, ");
    put_key_string(&a->body, "approval_id", f->approval_id);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "action_code_hash", f->action_code_hash);
    const char *proof = f->proof;
    if (proof) {
        oe_buf_puts(&a->body, ", \"proof\": ");
        oe_buf_puts(&a->body, proof);
    }
    oe_buf_putc(&a->body, '}');
    answer_check(a);
}

void oe_http_answer_from_outcome(const oe_request *req, const oe_outcome *o, oe_http_answer *a)
{
    if (o->status == OE_STATUS_REJECTED) {
        answer_rejection(a, oe_error_code_http_status(o->error), o->detail,
                         o->proof.len ? o->proof.data : NULL);
        return;
    }
    answer_fields f = {
        .id = o->id,
        .nonce = req->nonce,
        .action = req->action,
        .request_hash = o->request_hash,
        .result = o->result_json.data,
        .result_len = o->result_json.len,
        .approved = o->approved,
        .receipt = o->receipt,
        .approval_id = o->approval_id,
        .action_code_hash = o->action_code_hash[0] ? o->action_code_hash : NULL,
        .proof = o->proof.len ? o->proof.data : NULL,
        .status = o->status,
    };
    answer_execution(a, &f);
}

/* Logs a failure behind an HTTP answer, for the operator (the answer itself
 * says only "ledger unavailable" or "out of memory"): rate-limited, so
 * that clients asking during an outage cannot flood the log. err is the
 * backend's reason, connection strings already masked (ledger/). */
static void log_failure(const char *what, oe_rc rc, const char *err)
{
    static oe_log_limit limit = OE_LOG_LIMIT(30.0);
    oe_log_limited(&limit, rc, OE_LOG_ERROR, "http", "%s: %s: %s", what,
                   rc == OE_ENOMEM   ? "out of memory"
                   : rc == OE_ESTORE ? "ledger failure"
                                     : "ledger unavailable",
                   err);
}

void oe_http_answer_from_receipt(const oe_receipt *r, oe_http_answer *a)
{
    if (r->status == OE_STATUS_REJECTED || !r->id || !r->result || !r->receipt) {
        oe_error_code code = oe_error_code_from_name(r->error_code);
        answer_rejection(a, code == OE_ERR_NONE ? 400 : oe_error_code_http_status(code),
                         r->detail ? r->detail : "rejected",
                         r->status == OE_STATUS_REJECTED ? r->proof : NULL);
        return;
    }
    /* The result is pasted into the answer as a JSON value: anything on the
     * receipts topic can claim to be a receipt, so it is checked first. */
    size_t result_len = strlen(r->result);
    if (!json_valid(r->result, result_len)) {
        answer_detail(a, 502, "receipt carries an invalid result");
        answer_check(a);
        return;
    }
    answer_fields f = {
        .id = r->id,
        .nonce = r->nonce,
        .action = r->action,
        .request_hash = r->request_hash,
        .result = r->result,
        .result_len = result_len,
        .approved = r->approved,
        .receipt = r->receipt,
        .approval_id = r->approval_id,
        .action_code_hash = r->action_code_hash,
        .proof = r->proof,
        .status = r->status,
    };
    answer_execution(a, &f);
}

/* The bridge's reply (on the bridge's thread): keep the answer and wake the
 * suspended connection. */
static void bridge_reply(void *cls, const oe_receipt *r, int status, const char *reason)
{
    request_ctx *ctx = cls;
    if (r) {
        oe_http_answer_from_receipt(r, &ctx->answer);
    } else {
        answer_detail(&ctx->answer, status, reason);
        answer_check(&ctx->answer);
    }
    atomic_store(&ctx->replied, 1);
    MHD_resume_connection(ctx->connection);
}

/* POST /execute through Kafka: reject what cannot be a request at all
 * here (it would only be dead-lettered), publish the rest and suspend the
 * connection until the receipt (or the timeout) arrives. */
static MHD_RESULT execute_via_bridge(oe_http *h, struct MHD_Connection *c, request_ctx *ctx)
{
    if (ctx->submitted) {
        if (!atomic_load(&ctx->replied))
            return MHD_YES;
        return send_buf(h, c, ctx->answer.status, &ctx->answer.body);
    }
    const char *body = ctx->body.data ? ctx->body.data : "";
    /* Decoded once, as the workers will decode it: a body that is not a
     * JSON object is answered here; the rest is published, and the decoded
     * request tells the bridge which receipt answers it. */
    oe_request req;
    oe_decode_verdict verdict;
    oe_error_code code;
    char err[200];
    oe_rc rc =
        oe_codec_decode_json_request(body, ctx->body.len, &req, &verdict, &code, err, sizeof err);
    if (rc != OE_OK || !req.doc || oe_json_root(req.doc)->type != OE_JSON_OBJECT) {
        oe_request_clear(&req);
        if (rc != OE_OK)
            return send_detail(h, c, 503, "out of memory, try again");
        return send_detail(h, c, 422, err[0] ? err : "request body must be a JSON object");
    }
    /* Workers recognise JSON by its first byte: publish from the '{' (only
     * whitespace can come before it in a JSON object). */
    size_t skip = 0;
    while (skip < ctx->body.len && body[skip] != '{')
        skip++;
    ctx->connection = c;
    ctx->submitted = 1;
    MHD_suspend_connection(c);
    oe_bridge_submit(h->cfg.bridge, body + skip, ctx->body.len - skip, &req,
                     verdict == OE_DECODE_VALID, bridge_reply, ctx);
    oe_request_clear(&req);
    /* The producer copied the body: do not hold it (or its budget) while
     * waiting (the bridge thread writes only ctx->answer). */
    body_release(h, ctx);
    return MHD_YES;
}

/* A local job's end (the executor's thread): render the answer, release
 * the request, wake the connection. */
static void local_done(oe_exec_job *job, oe_rc rc, const char *err)
{
    request_ctx *ctx = job->ctx;
    oe_http *h = ctx->server;
    if (rc == OE_OK) {
        oe_http_answer_from_outcome(&job->item.req, &job->item.out, &ctx->answer);
    } else {
        /* A resource failure is no answer to the request: 503, try again.
         * The ledger's own reason is logged, not sent (docs/protocol.md §7). */
        log_failure("POST /execute", rc, err);
        answer_detail(&ctx->answer,
                      rc == OE_ENOMEM || rc == OE_EUNAVAIL || rc == OE_EDUP_LOG ? 503 : 500,
                      rc == OE_ENOMEM     ? "out of memory, try again"
                      : rc == OE_EUNAVAIL ? "ledger unavailable, try again"
                      : rc == OE_EDUP_LOG ? "receipts log taken: another process signs with "
                                            "this node's key"
                                          : "store failure");
        answer_check(&ctx->answer);
    }
    oe_outcome_clear(&job->item.out);
    oe_request_clear(&job->item.req);
    atomic_store(&ctx->replied, 1);
    MHD_resume_connection(ctx->connection);
    pthread_mutex_lock(&h->jobs_lock);
    if (--h->inflight == 0)
        pthread_cond_broadcast(&h->jobs_idle);
    pthread_mutex_unlock(&h->jobs_lock);
}

/* POST /execute without a bridge: decoded here, once, and queued with the
 * executor for the next group commit; the connection is suspended until
 * its answer is ready. */
static MHD_RESULT execute_local(oe_http *h, struct MHD_Connection *c, request_ctx *ctx)
{
    if (ctx->submitted) {
        if (!atomic_load(&ctx->replied))
            return MHD_YES;
        return send_buf(h, c, ctx->answer.status, &ctx->answer.body);
    }
    oe_batch_item *it = &ctx->job.item;
    oe_outcome_init(&it->out);
    it->decode_error = OE_ERR_NONE;
    it->decode_detail = ctx->job_detail;
    if (oe_request_from_json(ctx->body.data ? ctx->body.data : "", ctx->body.len, &it->req,
                             &it->decode_error, ctx->job_detail, sizeof ctx->job_detail) != OE_OK) {
        /* No verdict: nothing is recorded, the client may try again. */
        oe_request_clear(&it->req);
        return send_detail(h, c, 503, "out of memory, try again");
    }
    /* The request holds its own copy: the body (and its budget) goes now. */
    body_release(h, ctx);
    ctx->job.done = local_done;
    ctx->job.ctx = ctx;
    ctx->server = h;
    ctx->connection = c;
    pthread_mutex_lock(&h->jobs_lock);
    oe_rc rc = h->jobs_stop ? OE_EUNAVAIL : OE_OK;
    if (rc == OE_OK) {
        ctx->submitted = 1;
        h->inflight++;
        MHD_suspend_connection(c);
        rc = oe_executor_submit(h->cfg.executor, &ctx->job);
        if (rc != OE_OK) {
            h->inflight--;
            ctx->submitted = 0;
            MHD_resume_connection(c);
        }
    }
    pthread_mutex_unlock(&h->jobs_lock);
    if (rc != OE_OK) {
        oe_request_clear(&it->req);
        return send_detail(h, c, 503, "shutting down");
    }
    return MHD_YES;
}

/* POST /execute */
static MHD_RESULT handle_execute(oe_http *h, struct MHD_Connection *c, request_ctx *rc)
{
    if (rc->submitted)
        return h->cfg.bridge ? execute_via_bridge(h, c, rc) : execute_local(h, c, rc);
    char reason[200];
    if (!is_ready(h, reason, sizeof reason))
        return send_detail(h, c, 503, reason);
    if (h->cfg.bridge)
        return execute_via_bridge(h, c, rc);
    return execute_local(h, c, rc);
}

/* POST /receipts/verify. A whole receipt (a Kafka receipt, an /execute
 * answer, with its proof) -> {"valid": true} or {"valid": false,
 * "reason"}, checked against the trusted keys (docs/protocol.md §8). The seed's form,
 * {"exec_id", "result", "receipt"} -> {"valid"}, checks only the receipt
 * hash: result is the JSON value (hashed as json.dumps(result,
 * sort_keys=True)); a string is also accepted as the result_json text.
 * The id may also be named "id", as everywhere else (without status and
 * proof: else it is a whole receipt). */
static MHD_RESULT handle_verify(oe_http *h, struct MHD_Connection *c, request_ctx *rc)
{
    char err[300];
    oe_json_doc *doc;
    int prc =
        oe_json_parse(rc->body.data ? rc->body.data : "", rc->body.len, 0, &doc, err, sizeof err);
    if (prc != OE_OK)
        return send_detail(h, c, prc == OE_ENOMEM ? 503 : 422, err);
    const oe_json *root = oe_json_root(doc);
    const oe_json *id = oe_json_get(root, "exec_id");
    /* A whole receipt says its status (and carries a proof); the seed's
     * form names exec_id. */
    if (root->type == OE_JSON_OBJECT && !id &&
        (oe_json_get(root, "status") || oe_json_get(root, "proof"))) {
        oe_rc vrc = h->cfg.ntrusted ? oe_tlog_verify_json(root, h->cfg.trusted, h->cfg.ntrusted,
                                                          err, sizeof err)
                                    : OE_EINVAL;
        if (!h->cfg.ntrusted)
            snprintf(err, sizeof err, "this node trusts no signing key (signing is off)");
        oe_json_doc_free(doc);
        if (vrc == OE_ENOMEM)
            return send_detail(h, c, 503, "out of memory, try again");
        if (vrc == OE_OK)
            return send_json(h, c, 200, "{\"valid\": true}", 15);
        return send_false(h, c, 200, "valid", err);
    }
    if (!id)
        id = oe_json_get(root, "id");
    const oe_json *result = oe_json_get(root, "result");
    const oe_json *receipt = oe_json_get(root, "receipt");
    if (!id || id->type != OE_JSON_STRING || !receipt || receipt->type != OE_JSON_STRING ||
        !result || memchr(id->str, 0, id->len)) {
        oe_json_doc_free(doc);
        return send_detail(h, c, 422,
                           "body must be a receipt with its proof, or {\"id\" (or "
                           "\"exec_id\"): string, \"result\": value, \"receipt\": string}");
    }
    int valid = 0;
    char hash[65];
    oe_buf text;
    oe_buf_init(&text, 0);
    if (oe_json_dump(&text, result, OE_JSON_DEFAULT) == 0) {
        oe_receipt_hash(id->str, text.data, text.len, hash);
        valid = receipt->len == 64 && memcmp(hash, receipt->str, 64) == 0;
    }
    if (!valid && result->type == OE_JSON_STRING) {
        oe_receipt_hash(id->str, result->str, result->len, hash);
        valid = receipt->len == 64 && memcmp(hash, receipt->str, 64) == 0;
    }
    oe_buf_free(&text);
    oe_json_doc_free(doc);
    return send_json(h, c, 200, valid ? "{\"valid\": true}" : "{\"valid\": false}",
                     valid ? 15 : 16);
}

/* GET /log/{origin}/checkpoint: the log's latest signed checkpoint, as a
 * C2SP signed note (text/plain), or 404. The origin is matched as given
 * (it may hold slashes: openexec/0123...). */
static MHD_RESULT handle_log_checkpoint(oe_http *h, struct MHD_Connection *c, const char *origin,
                                        size_t len)
{
    char name[256], err[200];
    if (len == 0 || len >= sizeof name || !oe_utf8_valid(origin, len))
        return send_detail(h, c, 404, "Log not found");
    memcpy(name, origin, len);
    name[len] = '\0';
    char *note = NULL;
    int found = oe_store_log_checkpoint(h->cfg.reader, name, &note, err, sizeof err);
    if (found < 0) {
        log_failure("GET /log/{origin}/checkpoint", OE_EUNAVAIL, err);
        return send_detail(h, c, 503, "ledger unavailable");
    }
    if (!found)
        return send_detail(h, c, 404, "Log not found");
    MHD_RESULT ret = send_typed(h, c, 200, "text/plain; charset=utf-8", note, strlen(note), 0);
    free(note);
    return ret;
}

/* Whether key can name a stored receipt: a nonce of 1 to
 * OE_NONCE_MAX_BYTES bytes of valid UTF-8 (what a request may carry, docs/protocol.md §2), or an
 * execution id in its 8-4-4-4-12 hex form, copied lowered into id. Anything else cannot exist: it
 * is answered 404 without asking the ledger (PostgreSQL would refuse invalid UTF-8 with its own
 * error text). */
static int receipt_nonce_valid(const char *key)
{
    size_t len = strlen(key);
    return len > 0 && len <= OE_NONCE_MAX_BYTES && oe_utf8_valid(key, len);
}

static int receipt_id_valid(const char *key, char id[37])
{
    if (strlen(key) != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        char c = key[i];
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (dash ? c != '-' : !hex)
            return 0;
        id[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
    }
    id[36] = '\0';
    return 1;
}

/* A query parameter that must be a decimal size (no sign, no leading
 * zero): 1 and *out, 0 when absent, -1 when malformed. */
static int size_param(struct MHD_Connection *c, const char *name, uint64_t *out)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return 0;
    size_t n = strlen(v);
    if (n == 0 || n > 19 || (v[0] == '0' && n > 1))
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 1;
}

/* The answer of a proof made from the ledger (engine/proofs.h): 200 with
 * the proof, 404 when what is asked does not exist (the reason is ours),
 * 500 when the ledger's log contradicts itself or its rows, 503 when the
 * ledger cannot answer (its reason logged, never sent). */
static MHD_RESULT send_proof(oe_http *h, struct MHD_Connection *c, const char *what, oe_rc rc,
                             oe_buf *b, const char *err)
{
    if (rc == OE_OK)
        return send_buf(h, c, 200, b);
    if (rc == OE_EINVAL)
        return send_detail(h, c, 404, err);
    if (rc == OE_ESTORE) {
        log_failure(what, OE_ESTORE, err);
        return send_detail(h, c, 500,
                           "the ledger's receipts log does not hold this as signed "
                           "(run openexec ledger audit)");
    }
    log_failure(what, rc == OE_ENOMEM ? OE_ENOMEM : OE_EUNAVAIL, err);
    return send_detail(h, c, 503,
                       rc == OE_ENOMEM ? "out of memory, try again" : "ledger unavailable");
}

/* GET /receipts/{id}/proof[?size=N]: the proof of a stored execution, in
 * the checkpoint of its batch, or in the log's later tree of size N (a
 * checkpoint's size). */
static MHD_RESULT handle_receipt_proof(oe_http *h, struct MHD_Connection *c, const char *key,
                                       size_t len)
{
    char id[37], text[64], err[300];
    uint64_t size = 0;
    int given = size_param(c, "size", &size);
    if (given < 0)
        return send_detail(h, c, 422, "size must be a decimal number of entries");
    if (len >= sizeof text)
        return send_detail(h, c, 404, "Receipt not found");
    memcpy(text, key, len);
    text[len] = '\0';
    if (!receipt_id_valid(text, id))
        return send_detail(h, c, 404, "Receipt not found");
    oe_execution e;
    int found = oe_store_find_by_id(h->cfg.reader, id, &e, err, sizeof err);
    if (found < 0) {
        log_failure("GET /receipts/{id}/proof", OE_EUNAVAIL, err);
        return send_detail(h, c, 503, "ledger unavailable");
    }
    if (!found)
        return send_detail(h, c, 404, "Receipt not found");
    oe_buf b;
    oe_buf_init(&b, OE_HTTP_MAX_ANSWER);
    oe_rc rc;
    if (e.log_id <= 0) {
        snprintf(err, sizeof err, "this execution was recorded unsigned: nothing proves it");
        rc = OE_EINVAL;
    } else if (given) {
        rc = oe_proof_in_tree(h->cfg.reader, &e, size, &b, err, sizeof err);
    } else {
        oe_proof_cache cache = {0};
        rc = oe_proof_of_entry(&cache, h->cfg.reader, &e, &b, err, sizeof err);
        oe_proof_cache_clear(&cache);
    }
    MHD_RESULT ret = send_proof(h, c, "GET /receipts/{id}/proof", rc, &b, err);
    oe_buf_free(&b);
    oe_execution_clear(&e);
    return ret;
}

/* GET /log/{origin}/consistency?from=A&to=B: the consistency proof of two
 * of the log's checkpoints. */
static MHD_RESULT handle_log_consistency(oe_http *h, struct MHD_Connection *c, const char *origin,
                                         size_t len)
{
    char name[256], err[300];
    uint64_t from = 0, to = 0;
    int a = size_param(c, "from", &from), b_ = size_param(c, "to", &to);
    if (a <= 0 || b_ <= 0 || from == 0 || from > to)
        return send_detail(h, c, 422,
                           "from and to are required: decimal checkpoint sizes, 0 < from <= to");
    if (len == 0 || len >= sizeof name || !oe_utf8_valid(origin, len))
        return send_detail(h, c, 404, "Log not found");
    memcpy(name, origin, len);
    name[len] = '\0';
    oe_buf b;
    oe_buf_init(&b, OE_HTTP_MAX_ANSWER);
    oe_rc rc = oe_proof_consistency(h->cfg.reader, name, from, to, &b, err, sizeof err);
    MHD_RESULT ret = send_proof(h, c, "GET /log/{origin}/consistency", rc, &b, err);
    oe_buf_free(&b);
    return ret;
}

/* GET /receipts/{id}, and GET /receipts?nonce=N (by_nonce). A key that
 * cannot exist is not found; a ledger that cannot answer is 503 "ledger
 * unavailable", its reason logged, never sent (docs/protocol.md §7). */
static MHD_RESULT handle_receipt(oe_http *h, struct MHD_Connection *c, int by_nonce,
                                 const char *key)
{
    oe_execution e;
    char err[200];
    if (by_nonce && !key)
        return send_detail(h, c, 400, "query parameter nonce is required");
    char id[37];
    if (by_nonce ? !receipt_nonce_valid(key) : !receipt_id_valid(key, id))
        return send_detail(h, c, 404, "Receipt not found");
    int found = by_nonce
                    ? oe_store_find_by_nonce(h->cfg.reader, key, oe_ledger_key_of(key, strlen(key)),
                                             &e, err, sizeof err)
                    : oe_store_find_by_id(h->cfg.reader, id, &e, err, sizeof err);
    if (found < 0) {
        log_failure(by_nonce ? "GET /receipts?nonce" : "GET /receipts/{id}", OE_EUNAVAIL, err);
        return send_detail(h, c, 503, "ledger unavailable");
    }
    if (!found)
        return send_detail(h, c, 404, "Receipt not found");
    if (!e.result_json || !json_valid(e.result_json, strlen(e.result_json))) {
        oe_execution_clear(&e);
        return send_detail(h, c, 500, "stored receipt carries an invalid result");
    }
    oe_buf b;
    oe_buf_init(&b, OE_HTTP_MAX_ANSWER);
    char ts[64];
    oe_time_format_iso8601(e.created_at, ts, sizeof ts);
    oe_buf_puts(&b, "{");
    put_key_string(&b, "id", e.id);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "nonce", e.nonce);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "action", e.action);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "request_hash", e.request_hash);
    oe_buf_puts(&b, ", \"result\": ");
    oe_buf_puts(&b, e.result_json);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "result_json", e.result_json);
    oe_buf_printf(&b, ", \"approved\": %s, ", e.approved ? "true" : "false");
    put_key_string(&b, "approval_id", e.approval_id);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "action_code_hash", e.action_code_hash[0] ? e.action_code_hash : NULL);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "receipt", e.receipt);
    oe_buf_puts(&b, ", \"status\": \"executed\", \"error_code\": null, \"detail\": null, ");
    put_key_string(&b, "created_at", ts);
    oe_buf_putc(&b, '}');
    MHD_RESULT ret = send_buf(h, c, 200, &b);
    oe_buf_free(&b);
    oe_execution_clear(&e);
    return ret;
}

/* ------------------------------------------------------------------------
 * Routing and the access handler.
 */

static route find_route(const char *url, const char **allow)
{
    static const struct {
        const char *path;
        const char *method;
        route r;
    } routes[] = {
        {"/", "GET", R_ROOT},
        {"/health", "GET", R_HEALTH},
        {"/ready", "GET", R_READY},
        {"/version", "GET", R_VERSION},
        {"/metrics", "GET", R_METRICS},
        {"/execute", "POST", R_EXECUTE},
        {"/receipts/verify", "POST", R_VERIFY},
        {"/receipts", "GET", R_RECEIPT_BY_NONCE},
        {"/openapi.json", "GET", R_OPENAPI},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(url, routes[i].path) == 0) {
            *allow = routes[i].method;
            return routes[i].r;
        }
    if (strncmp(url, "/receipts/", 10) == 0 && url[10] && !strchr(url + 10, '/')) {
        *allow = "GET";
        return R_RECEIPT;
    }
    size_t n = strlen(url);
    if (strncmp(url, "/log/", 5) == 0 && n > 5 + 11 && strcmp(url + n - 11, "/checkpoint") == 0) {
        *allow = "GET";
        return R_LOG_CHECKPOINT;
    }
    if (strncmp(url, "/log/", 5) == 0 && n > 5 + 12 && strcmp(url + n - 12, "/consistency") == 0) {
        *allow = "GET";
        return R_LOG_CONSISTENCY;
    }
    if (strncmp(url, "/receipts/", 10) == 0 && n > 10 + 6 && strcmp(url + n - 6, "/proof") == 0 &&
        memchr(url + 10, '/', n - 10 - 6) == NULL) {
        *allow = "GET";
        return R_RECEIPT_PROOF;
    }
    return R_NONE;
}

/* Every instance of the headers that frame a body (libmicrohttpd looks at
 * the first Content-Length only, and ignores it when Transfer-Encoding is
 * present). */
typedef struct framing {
    unsigned cl_count; /* Content-Length header lines */
    const char *cl;    /* the first one's value */
    int cl_conflict;   /* another one differs from it */
    unsigned te_count; /* Transfer-Encoding header lines */
    const char *te;    /* the last one's value */
} framing;

static MHD_RESULT framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    framing *f = cls;
    value = value ? value : "";
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->cl_count++ == 0)
            f->cl = value;
        else if (strcmp(f->cl, value) != 0)
            f->cl_conflict = 1;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->te_count++;
        f->te = value;
    }
    return MHD_YES;
}

/* RFC 9112 §6.1 and §6.3: a body whose length the peers could read
 * differently (request smuggling) is refused, and the connection closed
 * since where the next request starts is unknown. Returns 0 or the status
 * to answer with, and the reason. */
static int framing_check(struct MHD_Connection *c, const char **reason)
{
    framing f = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, framing_header, &f);
    if (f.te_count && f.cl_count) {
        *reason = "Content-Length and Transfer-Encoding together are not allowed";
        return 400;
    }
    if (f.cl_conflict) {
        *reason = "conflicting Content-Length values";
        return 400;
    }
    if (f.te_count > 1 || (f.te_count && strcasecmp(f.te, "chunked") != 0)) {
        *reason = "only Transfer-Encoding: chunked is supported";
        return 400;
    }
    return 0;
}

/* The first call for a request (headers complete, no body read yet):
 * refuse what can be refused before the body is read. */
static MHD_RESULT begin_request(oe_http *h, struct MHD_Connection *c, request_ctx *ctx, route r,
                                const char *method, const char *allow, int is_head)
{
    const char *reason;
    int status = framing_check(c, &reason);
    if (status) {
        atomic_fetch_add(&h->framing_refused, 1);
        ctx->answered = 1;
        return send_detail_ex(h, c, status, reason, 1);
    }
    if (r == R_NONE) {
        ctx->answered = 1;
        return send_detail(h, c, 404, "Not Found");
    }
    if (strcmp(method, allow) != 0 && !is_head) {
        ctx->answered = 1;
        return send_method_not_allowed(h, c, allow);
    }
    /* Refuse an announced oversized body before reading any of it, and one
     * that cannot fit the budget left now; budget itself is taken only as
     * the bytes arrive (receive_body). */
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        unsigned long long announced = strtoull(cl, NULL, 10);
        if (announced > OE_HTTP_MAX_BODY) {
            ctx->answered = 1;
            return send_detail(h, c, 413, "Request body larger than 1 MiB");
        }
        size_t limit = announced <= OE_HTTP_SMALL_BODY
                           ? OE_HTTP_BODY_BUDGET + OE_HTTP_SMALL_BODY_RESERVE
                           : OE_HTTP_BODY_BUDGET;
        if (atomic_load(&h->body_bytes) + announced > limit ||
            atomic_load(&h->address_bytes[ctx->bucket]) + announced > OE_HTTP_BODY_PER_ADDRESS) {
            atomic_fetch_add(&h->budget_refused, 1);
            ctx->answered = 1;
            return send_detail(h, c, 503, "Too many request bodies in flight; try again later");
        }
    }
    return MHD_YES;
}

/* A chunk of the body. Past a limit nothing more is kept: libmicrohttpd
 * cannot answer in the middle of an upload, so the rest is drained and
 * answered at its end (the body deadline bounds how long that takes), and a
 * sender that goes on far beyond the limit is disconnected. */
static MHD_RESULT receive_body(oe_http *h, request_ctx *ctx, const char *data, size_t len)
{
    ctx->received += len;
    if (!ctx->refuse_status) {
        if (ctx->received > OE_HTTP_MAX_BODY) {
            ctx->refuse_status = 413;
            ctx->refuse_detail = "Request body larger than 1 MiB";
        } else if (body_reserve(h, ctx, ctx->body.len + len) != 0) {
            ctx->refuse_status = 503;
            ctx->refuse_detail = "Too many request bodies in flight; try again later";
        } else if (oe_buf_append(&ctx->body, data, len) != 0) {
            ctx->refuse_status = 503;
            ctx->refuse_detail = "Out of memory for the request body";
        }
        if (ctx->refuse_status)
            body_release(h, ctx);
    }
    return ctx->received > OE_HTTP_DRAIN_LIMIT ? MHD_NO : MHD_YES;
}

static MHD_RESULT handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                          const char *version, const char *upload_data, size_t *upload_size,
                          void **con_cls)
{
    (void)version;
    oe_http *h = cls;
    const char *allow = NULL;
    route r = find_route(url, &allow);
    int is_head = strcmp(method, "HEAD") == 0 && strcmp(allow ? allow : "", "GET") == 0;
    conn_rec *rec = conn_of(c);
    if (rec)
        atomic_store(&rec->route, (int)r);

    if (*con_cls == NULL) {
        request_ctx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        oe_buf_init(&ctx->body, OE_HTTP_MAX_BODY);
        oe_buf_init(&ctx->answer.body, OE_HTTP_MAX_ANSWER);
        ctx->conn = conn_of(c);
        ctx->bucket = address_bucket(c);
        *con_cls = ctx;
        conn_set_phase(ctx->conn, PHASE_BODY);
        MHD_RESULT ret = begin_request(h, c, ctx, r, method, allow, is_head);
        if (ctx->answered)
            conn_set_phase(ctx->conn, PHASE_HANDLING);
        return ret;
    }
    request_ctx *ctx = *con_cls;
    if (*upload_size) {
        MHD_RESULT ret = receive_body(h, ctx, upload_data, *upload_size);
        *upload_size = 0;
        return ret;
    }
    /* The request is complete: the deadlines stop here. */
    conn_set_phase(ctx->conn, PHASE_HANDLING);
    if (ctx->refuse_status) {
        if (ctx->answered)
            return MHD_YES;
        ctx->answered = 1;
        return send_detail(h, c, ctx->refuse_status, ctx->refuse_detail);
    }

    switch (r) {
    case R_ROOT:
        return handle_root(h, c);
    case R_HEALTH:
        return handle_health(h, c);
    case R_READY:
        return handle_ready(h, c);
    case R_VERSION:
        return handle_version(h, c);
    case R_METRICS:
        return handle_metrics(h, c);
    case R_EXECUTE:
        return handle_execute(h, c, ctx);
    case R_VERIFY:
        return handle_verify(h, c, ctx);
    case R_LOG_CHECKPOINT:
        return handle_log_checkpoint(h, c, url + 5, strlen(url) - 5 - 11);
    case R_LOG_CONSISTENCY:
        return handle_log_consistency(h, c, url + 5, strlen(url) - 5 - 12);
    case R_RECEIPT_PROOF:
        return handle_receipt_proof(h, c, url + 10, strlen(url) - 10 - 6);
    case R_RECEIPT:
        return handle_receipt(h, c, 0, url + 10);
    case R_RECEIPT_BY_NONCE:
        return handle_receipt(h, c, 1,
                              MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "nonce"));
    case R_OPENAPI:
        return handle_openapi(h, c);
    case R_NONE:
        break;
    }
    return send_detail(h, c, 404, "Not Found");
}

/* A request ended (answered, or its connection closed): free its state. A
 * kept-alive connection now waits for the next request's headers. */
static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    oe_http *h = cls;
    request_ctx *ctx = *con_cls;
    if (ctx) {
        body_release(h, ctx);
        oe_buf_free(&ctx->answer.body);
        free(ctx);
        *con_cls = NULL;
    }
    conn_set_phase(conn_of(c), PHASE_HEADERS);
}

/* libmicrohttpd's own diagnostics, through our logger (one line each). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char text[1024];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    oe_log(OE_LOG_WARN, "http", NULL, "%.*s", (int)len, text);
}

/* ------------------------------------------------------------------------
 * Lifecycle.
 */

/* host:port for messages, with brackets around an IPv6 literal. */
static void format_endpoint(const char *host, int port, char *out, size_t len)
{
    snprintf(out, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

/* Binds and listens on the first of the host's addresses that works.
 * Returns the socket, or -1 (no descriptor, as socket() says; not an
 * oe_rc) with the errno of the last attempt. */
static int bind_first(const struct addrinfo *list, int *ipv6, int *last_errno)
{
    *last_errno = EADDRNOTAVAIL;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            *last_errno = errno;
            continue;
        }
        int one = 1;
        /* A restarted server rebinds at once despite connections of its
         * previous run in TIME_WAIT; two live servers still conflict. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, OE_HTTP_LISTEN_BACKLOG) == 0) {
            *ipv6 = ai->ai_family == AF_INET6;
            return fd;
        }
        *last_errno = errno;
        close(fd);
    }
    return -1;
}

/* Connections are capped below the descriptor limit, so that accepting
 * them never starves the ledger or Kafka of descriptors. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    unsigned limit = OE_HTTP_MAX_CONNECTIONS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t usable = rl.rlim_cur > 2 * OE_HTTP_FD_RESERVE ? rl.rlim_cur - OE_HTTP_FD_RESERVE
                                                             : rl.rlim_cur / 2;
        if (usable < limit)
            limit = (unsigned)usable;
    }
    return limit ? limit : 1;
}

oe_rc oe_http_new(const oe_http_config *cfg, oe_http **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->host || !cfg->host[0]) {
        snprintf(err, errlen, "HTTP host is empty");
        return OE_EINVAL;
    }
    if (cfg->port < 0 || cfg->port > 65535) {
        snprintf(err, errlen, "HTTP port %d is not in 0..65535", cfg->port);
        return OE_EINVAL;
    }
    if (!cfg->engine || !cfg->metrics || (!cfg->bridge && !cfg->executor)) {
        snprintf(err, errlen, "HTTP server needs an engine, metrics and an executor");
        return OE_EINVAL;
    }
    char endpoint[320];
    format_endpoint(cfg->host, cfg->port, endpoint, sizeof endpoint);
    char service[16];
    snprintf(service, sizeof service, "%d", cfg->port);
    struct addrinfo hints = {0}, *list = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(cfg->host, service, &hints, &list);
    if (gai != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", endpoint,
                 gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        return gai == EAI_AGAIN || gai == EAI_SYSTEM || gai == EAI_MEMORY ? OE_EIO : OE_EINVAL;
    }
    int ipv6 = 0, last_errno = 0;
    int fd = bind_first(list, &ipv6, &last_errno);
    freeaddrinfo(list);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", endpoint, strerror(last_errno));
        return OE_EIO;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", endpoint, strerror(errno));
        close(fd);
        return OE_EIO;
    }
    oe_http *h = calloc(1, sizeof *h);
    if (!h) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    h->cfg = *cfg;
    h->listen_fd = fd;
    h->ipv6 = ipv6;
    h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    h->connection_limit = connection_limit();
    pthread_mutex_init(&h->conns_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->sweeper_wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&h->jobs_lock, NULL);
    pthread_cond_init(&h->jobs_idle, NULL);
    *out = h;
    return OE_OK;
}

void oe_http_set_bridge(oe_http *h, oe_bridge *bridge)
{
    h->cfg.bridge = bridge;
}

oe_rc oe_http_start(oe_http *h, char *err, size_t errlen)
{
    if (h->daemon || h->listen_fd == MHD_INVALID_SOCKET) {
        snprintf(err, errlen, "HTTP server already started");
        return OE_EINVAL;
    }
    h->sweeper_stop = 0;
    if (pthread_create(&h->sweeper, NULL, sweeper_main, h) != 0) {
        snprintf(err, errlen, "cannot start the HTTP deadline thread");
        return OE_EIO;
    }
    h->sweeper_running = 1;
    h->jobs_stop = 0;
    unsigned threads = h->cfg.threads ? h->cfg.threads : 4;
    /* poll(), not epoll: libmicrohttpd 0.9.75 can abort the process in
     * MHD_quiesce_daemon on an epoll daemon with its own threads (its
     * threads and the quiesce both take the listening socket out of the
     * epoll set, unlocked, and the loser panics on ENOENT: "Failed to
     * remove listen FD from epoll set"), seen as a SIGABRT when SIGTERM
     * came under load. The poll() side of quiescing has no such race. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME | (h->ipv6 ? MHD_USE_IPv6 : 0);
    /* The socket is handed over: libmicrohttpd closes it when it stops,
     * and on nearly every failure path too, so it is not ours to close in
     * either case (a leak on a failed start is better than closing a
     * descriptor number another thread may have been given). */
    MHD_socket fd = h->listen_fd;
    h->listen_fd = MHD_INVALID_SOCKET;
    struct MHD_OptionItem options[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, h},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)notify_connection, h},
        {MHD_OPTION_CONNECTION_TIMEOUT, OE_HTTP_IDLE_TIMEOUT_S, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, h->connection_limit, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, OE_HTTP_PER_IP_CONNECTIONS, NULL},
        /* One thread polls by itself; libmicrohttpd warns about a pool of 1. */
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handler, h, MHD_OPTION_ARRAY, options,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        sweeper_stop(h);
        snprintf(err, errlen, "cannot start the HTTP server on port %d", h->port);
        return OE_EIO;
    }
    return OE_OK;
}

int oe_http_port(const oe_http *h)
{
    return h->port;
}

void oe_http_stop(oe_http *h)
{
    if (!h || !h->daemon)
        return;
    /* The listening socket is ours again after quiescing, but only to close
     * after the daemon's threads stopped using it (below). */
    MHD_socket quiesced = MHD_quiesce_daemon(h->daemon);
    for (int waited = 0; waited < OE_HTTP_STOP_GRACE_MS; waited += 10) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* Every request with the executor is answered (and its connection
     * resumed) before the daemon closes connections and frees their
     * contexts; no new one is queued. */
    pthread_mutex_lock(&h->jobs_lock);
    h->jobs_stop = 1;
    while (h->inflight > 0)
        pthread_cond_wait(&h->jobs_idle, &h->jobs_lock);
    pthread_mutex_unlock(&h->jobs_lock);
    MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    if (quiesced != MHD_INVALID_SOCKET)
        close(quiesced);
    sweeper_stop(h);
}

void oe_http_free(oe_http *h)
{
    if (!h)
        return;
    oe_http_stop(h);
    if (h->listen_fd != MHD_INVALID_SOCKET)
        close(h->listen_fd);
    pthread_cond_destroy(&h->sweeper_wake);
    pthread_mutex_destroy(&h->conns_lock);
    pthread_cond_destroy(&h->jobs_idle);
    pthread_mutex_destroy(&h->jobs_lock);
    free(h);
}

const char *oe_http_library_version(void)
{
    return MHD_get_version();
}
