#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/approval.h"
#include "engine/ids.h"
#include "engine/json.h"
#include "engine/request.h"
#include "engine/status.h"

/* libmicrohttpd changed its handler return type from int to enum MHD_Result
 * in 0.9.71; this keeps the handlers portable across both. */
#if MHD_VERSION >= 0x00097002
#define MHD_RESULT enum MHD_Result
#else
#define MHD_RESULT int
#endif

/* Largest request body (SPEC §10), enforced while it arrives. */
#define OE_HTTP_MAX_BODY OE_REQUEST_MAX_BYTES
/* A body of unannounced size is drained up to this much before the
 * connection is closed without an answer. */
#define OE_HTTP_DRAIN_LIMIT ((size_t)8 << 20)

struct oe_http {
    struct MHD_Daemon *daemon;
    oe_http_config cfg;
    int port;
    MHD_socket quiesced_fd; /* listening socket after oe_http_quiesce */
};

/* Per-connection state, created on the first call of the handler. */
typedef struct request_ctx {
    struct MHD_Connection *connection;
    oe_buf body;
    oe_http_answer answer;  /* filled by the bridge's reply */
    atomic_int replied;     /* the answer is ready */
    int submitted;          /* handed to the bridge, connection suspended */
    int too_large;   /* the body passed the limit: answer 413 */
    int answered;    /* a response is already queued */
    size_t received; /* body bytes seen, kept or not */
} request_ctx;

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Queues a JSON response; the body is copied. */
static MHD_RESULT send_json(oe_http *h, struct MHD_Connection *c, int status, const char *body,
                            size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_RESULT ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    if (status >= 100 && status < 600)
        atomic_fetch_add(&h->cfg.metrics->http_responses[status / 100], 1);
    return ret;
}

/* {"detail": reason} with the given status. */
static MHD_RESULT send_detail(oe_http *h, struct MHD_Connection *c, int status, const char *detail)
{
    oe_buf b;
    oe_buf_init(&b, 0);
    oe_buf_puts(&b, "{\"detail\": ");
    oe_json_dump_string(&b, detail, strlen(detail));
    oe_buf_putc(&b, '}');
    MHD_RESULT ret = send_json(h, c, status, b.data, b.len);
    oe_buf_free(&b);
    return ret;
}

static MHD_RESULT send_method_not_allowed(oe_http *h, struct MHD_Connection *c, const char *allow)
{
    static const char body[] = "{\"detail\": \"Method Not Allowed\"}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    MHD_RESULT ret = MHD_queue_response(c, 405, r);
    MHD_destroy_response(r);
    atomic_fetch_add(&h->cfg.metrics->http_responses[4], 1);
    return ret;
}

static void put_key_string(oe_buf *b, const char *key, const char *value)
{
    oe_json_dump_string(b, key, strlen(key));
    oe_buf_puts(b, ": ");
    if (value)
        oe_json_dump_string(b, value, strlen(value));
    else
        oe_buf_puts(b, "null");
}

/* GET / */
static MHD_RESULT handle_root(oe_http *h, struct MHD_Connection *c)
{
    static const char body[] = "{\"service\": \"OpenExec\", \"status\": \"running\", \"version\": \"" OE_VERSION "\"}";
    return send_json(h, c, 200, body, sizeof body - 1);
}

/* GET /health: mode, signature verification, and the allow-list or a
 * warning that every registered action is permitted. */
static MHD_RESULT handle_health(oe_http *h, struct MHD_Connection *c)
{
    oe_engine *e = h->cfg.engine;
    oe_buf b;
    oe_buf_init(&b, 0);
    oe_buf_puts(&b, "{\"status\": \"healthy\", ");
    put_key_string(&b, "mode", oe_engine_clawshield(e) ? "clawshield" : "demo");
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "signature_verification",
                   oe_engine_signature_verification(e) ? "enabled" : "disabled");
    oe_buf_puts(&b, ", ");
    const char *allowed = oe_engine_allowed_actions(e);
    if (allowed[0]) {
        put_key_string(&b, "restriction", "restricted");
        oe_buf_puts(&b, ", \"allow_list\": [");
        const char *p = allowed;
        int first = 1;
        while (*p) {
            p += strspn(p, ", ");
            size_t n = strcspn(p, ",");
            size_t m = n;
            while (m > 0 && p[m - 1] == ' ')
                m--;
            if (m > 0) {
                if (!first)
                    oe_buf_puts(&b, ", ");
                oe_json_dump_string(&b, p, m);
                first = 0;
            }
            p += n;
        }
        oe_buf_putc(&b, ']');
    } else {
        put_key_string(&b, "restriction", "open");
        oe_buf_puts(&b, ", ");
        put_key_string(&b, "warning",
                       "No allow-list configured (OPENEXEC_ALLOWED_ACTIONS): every registered "
                       "action may run");
    }
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "version", OE_VERSION);
    oe_buf_putc(&b, '}');
    MHD_RESULT ret = send_json(h, c, 200, b.data, b.len);
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
    oe_buf b;
    oe_buf_init(&b, 0);
    oe_buf_puts(&b, "{\"ready\": false, ");
    put_key_string(&b, "reason", reason);
    oe_buf_putc(&b, '}');
    MHD_RESULT ret = send_json(h, c, 503, b.data, b.len);
    oe_buf_free(&b);
    return ret;
}

/* GET /version */
static MHD_RESULT handle_version(oe_http *h, struct MHD_Connection *c)
{
    char ts[64], body[160];
    oe_time_format_iso8601(wall_clock(), ts, sizeof ts);
    int n = snprintf(body, sizeof body, "{\"version\": \"%s\", \"timestamp\": \"%s\"}", OE_VERSION, ts);
    return send_json(h, c, 200, body, (size_t)n);
}

/* GET /metrics: Prometheus text format. */
static MHD_RESULT handle_metrics(oe_http *h, struct MHD_Connection *c)
{
    char reason[200];
    oe_buf b;
    oe_buf_init(&b, 0);
    oe_metrics_render(h->cfg.metrics, is_ready(h, reason, sizeof reason), OE_VERSION, &b);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
    oe_buf_free(&b);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    MHD_RESULT ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    atomic_fetch_add(&h->cfg.metrics->http_responses[2], 1);
    return ret;
}

void oe_http_answer_from_outcome(const oe_request *req, const oe_outcome *o, oe_http_answer *a)
{
    oe_buf_reset(&a->body);
    if (o->status == OE_STATUS_REJECTED) {
        a->status = oe_error_code_http_status(o->error);
        oe_buf_puts(&a->body, "{\"detail\": ");
        oe_json_dump_string(&a->body, o->detail, strlen(o->detail));
        oe_buf_putc(&a->body, '}');
        return;
    }
    a->status = 200;
    oe_buf_puts(&a->body, "{");
    put_key_string(&a->body, "id", o->id);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "action", req->action);
    oe_buf_puts(&a->body, ", \"result\": ");
    oe_buf_append(&a->body, o->result_json.data, o->result_json.len);
    oe_buf_printf(&a->body, ", \"approved\": %s, ", o->approved ? "true" : "false");
    put_key_string(&a->body, "receipt", o->receipt);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "status", oe_status_name(o->status));
    oe_buf_putc(&a->body, '}');
}

void oe_http_execute_in_process(void *ctx, const char *body, size_t len, oe_http_answer *a)
{
    oe_local_executor *x = ctx;
    oe_batch_item item = {0};
    oe_batch_item *items[1] = {&item};
    char reason[512];
    oe_outcome_init(&item.out);
    if (oe_request_from_json(body, len, &item.req, &item.decode_error, reason, sizeof reason) !=
        OE_OK) {
        /* No verdict: nothing is recorded, the client may try again. */
        a->status = 503;
        oe_buf_reset(&a->body);
        oe_buf_puts(&a->body, "{\"detail\": \"out of memory, try again\"}");
        goto done;
    }
    item.decode_detail = reason;
    char err[256];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = oe_engine_process(x->engine, items, 1, wall_clock(), err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc != OE_OK) {
        atomic_fetch_add(&x->metrics->store_errors, 1);
        /* A resource failure is no answer to the request: 503, try again. */
        a->status = rc == OE_ENOMEM ? 503 : 500;
        oe_buf_reset(&a->body);
        oe_buf_puts(&a->body, "{\"detail\": ");
        char msg[320];
        snprintf(msg, sizeof msg, "%s: %s", rc == OE_ENOMEM ? "out of memory" : "store failure",
                 err);
        oe_json_dump_string(&a->body, msg, strlen(msg));
        oe_buf_putc(&a->body, '}');
    } else {
        oe_metrics_batch(x->metrics, items, 1,
                         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        oe_http_answer_from_outcome(&item.req, &item.out, a);
    }
done:
    oe_outcome_clear(&item.out);
    oe_request_clear(&item.req);
}

static void answer_detail(oe_http_answer *a, int status, const char *detail)
{
    a->status = status;
    oe_buf_reset(&a->body);
    oe_buf_puts(&a->body, "{\"detail\": ");
    oe_json_dump_string(&a->body, detail, strlen(detail));
    oe_buf_putc(&a->body, '}');
}

void oe_http_answer_from_receipt(const oe_receipt *r, oe_http_answer *a)
{
    if (r->status == OE_STATUS_REJECTED || !r->id || !r->result || !r->receipt) {
        oe_error_code code = oe_error_code_from_name(r->error_code);
        answer_detail(a, code == OE_ERR_NONE ? 400 : oe_error_code_http_status(code),
                      r->detail ? r->detail : "rejected");
        return;
    }
    a->status = 200;
    oe_buf_reset(&a->body);
    oe_buf_puts(&a->body, "{");
    put_key_string(&a->body, "id", r->id);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "action", r->action);
    oe_buf_puts(&a->body, ", \"result\": ");
    oe_buf_puts(&a->body, r->result);
    oe_buf_printf(&a->body, ", \"approved\": %s, ", r->approved ? "true" : "false");
    put_key_string(&a->body, "receipt", r->receipt);
    oe_buf_puts(&a->body, ", ");
    put_key_string(&a->body, "status", oe_status_name(r->status));
    oe_buf_putc(&a->body, '}');
}

/* The bridge's reply: keep the answer and wake the suspended connection. */
static void bridge_reply(void *cls, const oe_receipt *r, int status, const char *reason)
{
    request_ctx *ctx = cls;
    if (r)
        oe_http_answer_from_receipt(r, &ctx->answer);
    else
        answer_detail(&ctx->answer, status, reason);
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
        return send_json(h, c, ctx->answer.status, ctx->answer.body.data, ctx->answer.body.len);
    }
    char err[200];
    const char *body = ctx->body.data ? ctx->body.data : "";
    oe_json_doc *doc;
    int prc = oe_json_parse(body, ctx->body.len, 0, &doc, err, sizeof err);
    if (prc != OE_OK)
        return send_detail(h, c, prc == OE_ENOMEM ? 503 : 422, err);
    const oe_json *root = oe_json_root(doc);
    if (root->type != OE_JSON_OBJECT) {
        oe_json_doc_free(doc);
        return send_detail(h, c, 422, "request body must be a JSON object");
    }
    const oe_json *nonce = oe_json_get(root, "nonce");
    char *key = nonce && nonce->type == OE_JSON_STRING ? strndup(nonce->str, nonce->len) : NULL;
    oe_json_doc_free(doc);
    /* Workers recognise JSON by its first byte: publish from the '{'. */
    size_t skip = 0;
    while (skip < ctx->body.len && body[skip] != '{')
        skip++;
    ctx->connection = c;
    ctx->submitted = 1;
    MHD_suspend_connection(c);
    oe_bridge_submit(h->cfg.bridge, body + skip, ctx->body.len - skip, key, bridge_reply, ctx);
    free(key);
    /* The producer copied the body: do not hold it while waiting (the
     * bridge thread writes only ctx->answer). */
    oe_buf_free(&ctx->body);
    return MHD_YES;
}

/* POST /execute */
static MHD_RESULT handle_execute(oe_http *h, struct MHD_Connection *c, request_ctx *rc)
{
    if (rc->submitted)
        return execute_via_bridge(h, c, rc);
    char reason[200];
    if (!is_ready(h, reason, sizeof reason))
        return send_detail(h, c, 503, reason);
    if (h->cfg.bridge)
        return execute_via_bridge(h, c, rc);
    oe_http_answer a = {0};
    oe_buf_init(&a.body, 0);
    h->cfg.execute(h->cfg.execute_ctx, rc->body.data ? rc->body.data : "", rc->body.len, &a);
    MHD_RESULT ret = send_json(h, c, a.status, a.body.data ? a.body.data : "", a.body.len);
    oe_buf_free(&a.body);
    return ret;
}

/* POST /receipts/verify: {"exec_id", "result", "receipt"} -> {"valid"}.
 * result is the JSON value (hashed as json.dumps(result, sort_keys=True));
 * a string is also accepted as the result_json text itself. */
static MHD_RESULT handle_verify(oe_http *h, struct MHD_Connection *c, request_ctx *rc)
{
    char err[200];
    oe_json_doc *doc;
    int prc = oe_json_parse(rc->body.data ? rc->body.data : "", rc->body.len, 0, &doc, err,
                            sizeof err);
    if (prc != OE_OK)
        return send_detail(h, c, prc == OE_ENOMEM ? 503 : 422, err);
    const oe_json *root = oe_json_root(doc);
    const oe_json *id = oe_json_get(root, "exec_id");
    const oe_json *result = oe_json_get(root, "result");
    const oe_json *receipt = oe_json_get(root, "receipt");
    if (!id || id->type != OE_JSON_STRING || !receipt || receipt->type != OE_JSON_STRING ||
        !result || memchr(id->str, 0, id->len)) {
        oe_json_doc_free(doc);
        return send_detail(h, c, 422,
                           "body must be {\"exec_id\": string, \"result\": value, \"receipt\": string}");
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

/* GET /receipts/{id} */
static MHD_RESULT handle_receipt(oe_http *h, struct MHD_Connection *c, const char *id)
{
    oe_execution e;
    char err[200];
    int found = strlen(id) <= 64 ? oe_store_find_by_id(h->cfg.reader, id, &e, err, sizeof err) : 0;
    if (found < 0)
        return send_detail(h, c, 500, err);
    if (!found)
        return send_detail(h, c, 404, "Receipt not found");
    oe_buf b;
    oe_buf_init(&b, 0);
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
    put_key_string(&b, "receipt", e.receipt);
    oe_buf_puts(&b, ", ");
    put_key_string(&b, "created_at", ts);
    oe_buf_putc(&b, '}');
    MHD_RESULT ret = send_json(h, c, 200, b.data, b.len);
    oe_buf_free(&b);
    oe_execution_clear(&e);
    return ret;
}

/* The routes: path, allowed method, and whether a body is read. */
typedef enum { R_ROOT, R_HEALTH, R_READY, R_VERSION, R_METRICS, R_EXECUTE, R_VERIFY, R_RECEIPT, R_NONE } route;

static route find_route(const char *url, const char **allow)
{
    static const struct {
        const char *path;
        const char *method;
        route r;
    } routes[] = {
        {"/", "GET", R_ROOT},           {"/health", "GET", R_HEALTH},
        {"/ready", "GET", R_READY},     {"/version", "GET", R_VERSION},
        {"/metrics", "GET", R_METRICS}, {"/execute", "POST", R_EXECUTE},
        {"/receipts/verify", "POST", R_VERIFY},
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
    return R_NONE;
}

static MHD_RESULT handler(void *cls, struct MHD_Connection *c, const char *url,
                          const char *method, const char *version, const char *upload_data,
                          size_t *upload_size, void **con_cls)
{
    (void)version;
    oe_http *h = cls;
    const char *allow = NULL;
    route r = find_route(url, &allow);
    int is_head = strcmp(method, "HEAD") == 0 && strcmp(allow ? allow : "", "GET") == 0;

    if (*con_cls == NULL) {
        request_ctx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        oe_buf_init(&ctx->body, OE_HTTP_MAX_BODY);
        oe_buf_init(&ctx->answer.body, 0);
        *con_cls = ctx;
        if (r == R_NONE)
            return send_detail(h, c, 404, "Not Found");
        if (strcmp(method, allow) != 0 && !is_head)
            return send_method_not_allowed(h, c, allow);
        /* Refuse an announced oversized body before reading any of it. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > OE_HTTP_MAX_BODY) {
            ctx->too_large = 1;
            ctx->answered = 1;
            return send_detail(h, c, 413, "Request body larger than 1 MiB");
        }
        return MHD_YES;
    }
    request_ctx *ctx = *con_cls;
    if (*upload_size) {
        /* Count the bytes as they arrive. Past the limit nothing more is
         * kept; libmicrohttpd cannot answer in the middle of an upload, so
         * the rest is drained and answered 413 at its end, and a sender that
         * goes on far beyond the limit is disconnected. */
        ctx->received += *upload_size;
        if (!ctx->too_large && oe_buf_append(&ctx->body, upload_data, *upload_size) != 0) {
            ctx->too_large = 1;
            oe_buf_free(&ctx->body);
        }
        *upload_size = 0;
        return ctx->received > OE_HTTP_DRAIN_LIMIT ? MHD_NO : MHD_YES;
    }
    if (ctx->too_large) {
        if (ctx->answered)
            return MHD_YES;
        ctx->answered = 1;
        return send_detail(h, c, 413, "Request body larger than 1 MiB");
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
    case R_RECEIPT:
        return handle_receipt(h, c, url + 10);
    case R_NONE:
        break;
    }
    return send_detail(h, c, 404, "Not Found");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    request_ctx *ctx = *con_cls;
    if (ctx) {
        oe_buf_free(&ctx->body);
        oe_buf_free(&ctx->answer.body);
        free(ctx);
        *con_cls = NULL;
    }
}

/* libmicrohttpd's own diagnostics go to stderr with a prefix. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("openexec: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int oe_http_start(const oe_http_config *cfg, oe_http **out, char *err, size_t errlen)
{
    oe_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->cfg = *cfg;
    h->quiesced_fd = MHD_INVALID_SOCKET;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) {
        snprintf(err, errlen, "OPENEXEC_HTTP_HOST %s is not an IPv4 address", cfg->host);
        free(h);
        return -1;
    }
    unsigned threads = cfg->threads ? cfg->threads : 4;
    h->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
            MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
        handler, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%d (port in use?)", cfg->host, cfg->port);
        free(h);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : cfg->port;
    *out = h;
    return 0;
}

int oe_http_port(const oe_http *h)
{
    return h->port;
}

void oe_http_quiesce(oe_http *h, int max_ms)
{
    if (!h || !h->daemon)
        return;
    /* The listening socket is ours to close, but only after the daemon's
     * threads stopped using it (oe_http_stop). */
    h->quiesced_fd = MHD_quiesce_daemon(h->daemon);
    for (int waited = 0; waited < max_ms; waited += 10) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0)
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void oe_http_stop(oe_http *h)
{
    if (!h)
        return;
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    if (h->quiesced_fd != MHD_INVALID_SOCKET)
        close(h->quiesced_fd);
    free(h);
}
