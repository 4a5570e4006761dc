/* Tests admin-http/http.c's renderers and its binding step: /execute answers
 * built from receipts and outcomes (a forged result is refused, a capped
 * answer becomes a 500 and never comes out truncated), and oe_http_new on
 * host names, IPv6 and a port in use. Real sockets and a real SQLite file;
 * the server itself is exercised end to end by tests/http/. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin-http/http.h"
#include "codec/codec.h"
#include "engine/executor.h"
#include "engine/json.h"
#include "engine/status.h"
#include "ledger/ledger.h"
#include "tests/test.h"

static char dir[64];

/* 1 when text[0..len) is one valid JSON value. */
static int is_json(const char *text, size_t len)
{
    char err[200];
    oe_json_doc *doc = test_json_parse(text ? text : "", text ? len : 0, 0, err, sizeof err);
    oe_json_doc_free(doc);
    return doc != NULL;
}

/* A successful receipt carrying result (borrowed strings). */
static oe_receipt receipt_with(char *result)
{
    static char id[] = "0195f0c2-7d1e-8a5b-9c3d-2e4f6a8b0c1d";
    static char action[] = "echo";
    static char hash[] = "5d41402abc4b2a76b9719d911017c592aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    oe_receipt r;
    memset(&r, 0, sizeof r);
    r.id = id;
    r.action = action;
    r.receipt = hash;
    r.result = result;
    r.status = OE_STATUS_EXECUTED;
    r.approved = 1;
    return r;
}

static void test_receipt_answer_valid(void)
{
    char result[] = "{\"echo\": {\"a\": [1, 2.5, \"x\"]}}";
    oe_receipt r = receipt_with(result);
    oe_http_answer a;
    oe_buf_init(&a.body, OE_HTTP_MAX_ANSWER);
    oe_http_answer_from_receipt(&r, &a);
    ASSERT_EQ(a.status, 200);
    ASSERT_EQ(oe_buf_failed(&a.body), 0);
    ASSERT_TRUE(is_json(a.body.data, a.body.len));
    ASSERT_CONTAINS(a.body.data, "\"result\": {\"echo\": {\"a\": [1, 2.5, \"x\"]}}");
    oe_buf_free(&a.body);
}

/* A receipt is whatever was published on the receipts topic: a result that
 * is not one JSON value must not be pasted into a 200 answer. */
static void test_receipt_answer_invalid_result(void)
{
    static const char *bad[] = {
        "{\"echo\": ",            /* cut short */
        "1, \"approved\": false", /* splices fields into the answer */
        "{\"a\": 1, \"a\": 2}",   /* duplicate key */
        "NaN",
        "",
        "\"\xff\"", /* invalid UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = strdup(bad[i]);
        oe_receipt r = receipt_with(text);
        oe_http_answer a;
        oe_buf_init(&a.body, OE_HTTP_MAX_ANSWER);
        oe_http_answer_from_receipt(&r, &a);
        ASSERT_EQ(a.status, 502);
        ASSERT_STREQ(a.body.data, "{\"detail\": \"receipt carries an invalid result\"}");
        oe_buf_free(&a.body);
        free(text);
    }
}

/* A valid result that does not fit the answer's cap gives the fixed 500,
 * itself valid JSON, not the first part of the answer with status 200. */
static void test_receipt_answer_over_cap(void)
{
    size_t n = 4000;
    char *result = malloc(n + 16);
    strcpy(result, "{\"echo\": \"");
    size_t len = strlen(result);
    memset(result + len, 'a', n);
    strcpy(result + len + n, "\"}");
    oe_receipt r = receipt_with(result);
    oe_http_answer a;
    oe_buf_init(&a.body, 1024);
    oe_http_answer_from_receipt(&r, &a);
    ASSERT_EQ(a.status, 500);
    ASSERT_EQ(oe_buf_failed(&a.body), 0);
    ASSERT_TRUE(is_json(a.body.data, a.body.len));
    ASSERT_CONTAINS(a.body.data, "could not be rendered");
    /* The same answer reused with room enough is rendered whole. */
    a.body.max = OE_HTTP_MAX_ANSWER;
    oe_http_answer_from_receipt(&r, &a);
    ASSERT_EQ(a.status, 200);
    ASSERT_TRUE(is_json(a.body.data, a.body.len));
    oe_buf_free(&a.body);
    free(result);
}

/* When even the fixed body does not fit, the buffer stays failed (the
 * server then sends the fixed text itself) and the status is still 500. */
static void test_receipt_answer_tiny_cap(void)
{
    char result[] = "{\"echo\": 1}";
    oe_receipt r = receipt_with(result);
    oe_http_answer a;
    oe_buf_init(&a.body, 16);
    oe_http_answer_from_receipt(&r, &a);
    ASSERT_EQ(a.status, 500);
    ASSERT_TRUE(oe_buf_failed(&a.body) != 0);
    oe_buf_free(&a.body);
}

/* A rejection's detail is echoed; over the cap it becomes the fixed 500. */
static void test_rejection_answer_over_cap(void)
{
    char detail[3000];
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    char code[] = "unknown_action";
    oe_receipt r;
    memset(&r, 0, sizeof r);
    r.status = OE_STATUS_REJECTED;
    r.error_code = code;
    r.detail = detail;
    oe_http_answer a;
    oe_buf_init(&a.body, 1024);
    oe_http_answer_from_receipt(&r, &a);
    ASSERT_EQ(a.status, 500);
    ASSERT_TRUE(is_json(a.body.data, a.body.len));
    a.body.max = OE_HTTP_MAX_ANSWER;
    oe_http_answer_from_receipt(&r, &a);
    ASSERT_EQ(a.status, 400);
    ASSERT_TRUE(is_json(a.body.data, a.body.len));
    oe_buf_free(&a.body);
}

/* An outcome's answer follows the same rule. */
static void test_outcome_answer_over_cap(void)
{
    char err[200];
    oe_request req;
    const char body[] = "{\"action\": \"echo\", \"nonce\": \"n1\", \"payload\": {}}";
    ASSERT_EQ(test_request_from_json(body, sizeof body - 1, &req, err, sizeof err), OE_ERR_NONE);
    oe_outcome o;
    oe_outcome_init(&o);
    o.status = OE_STATUS_EXECUTED;
    strcpy(o.id, "0195f0c2-7d1e-8a5b-9c3d-2e4f6a8b0c1d");
    memset(o.receipt, 'a', 64);
    o.receipt[64] = '\0';
    oe_buf_puts(&o.result_json, "{\"echo\": \"");
    for (int i = 0; i < 500; i++)
        oe_buf_puts(&o.result_json, "0123456789");
    oe_buf_puts(&o.result_json, "\"}");
    ASSERT_EQ(oe_buf_failed(&o.result_json), 0);
    oe_http_answer a;
    oe_buf_init(&a.body, 2048);
    oe_http_answer_from_outcome(&req, &o, &a);
    ASSERT_EQ(a.status, 500);
    ASSERT_TRUE(is_json(a.body.data, a.body.len));
    a.body.max = OE_HTTP_MAX_ANSWER;
    oe_http_answer_from_outcome(&req, &o, &a);
    ASSERT_EQ(a.status, 200);
    ASSERT_TRUE(is_json(a.body.data, a.body.len));
    oe_buf_free(&a.body);
    oe_outcome_clear(&o);
    oe_request_clear(&req);
}

/* A real engine on a temporary ledger, for oe_http_new's checks. */
typedef struct {
    oe_store *store;
    oe_engine *engine;
    oe_metrics metrics;
    oe_executor *executor;
    oe_http_config cfg;
} fixture;

static int open_fixture(fixture *f, const char *host, int port)
{
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/http.db", dir);
    memset(f, 0, sizeof *f);
    oe_metrics_init(&f->metrics);
    oe_engine_config ecfg = {.tenant = "", .allowed_actions = ""};
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &f->store, err, sizeof err) != 0 ||
        oe_engine_new(&ecfg, f->store, &f->engine, err, sizeof err) != 0) {
        OE_FAIL_("fixture: %s", err);
        return -1;
    }
    if (oe_executor_new(f->engine, &f->metrics, &f->executor) != OE_OK ||
        oe_executor_start(f->executor, err, sizeof err) != OE_OK) {
        OE_FAIL_("fixture: executor: %s", err);
        return -1;
    }
    f->cfg = (oe_http_config){.host = host,
                              .port = port,
                              .threads = 1,
                              .engine = f->engine,
                              .reader = f->store,
                              .metrics = &f->metrics,
                              .executor = f->executor};
    return 0;
}

static void close_fixture(fixture *f)
{
    oe_executor_free(f->executor);
    oe_engine_free(f->engine);
    oe_store_free(f->store);
}

/* 1 when this machine has the IPv6 loopback address. */
static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void test_new_binds_names_and_ipv6(void)
{
    const char *hosts[] = {"127.0.0.1", "localhost", "::1", "0.0.0.0"};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        if (strcmp(hosts[i], "::1") == 0 && !have_ipv6_loopback())
            continue;
        fixture f;
        if (open_fixture(&f, hosts[i], 0) != 0)
            return;
        char err[300] = "";
        oe_http *h = NULL;
        oe_rc rc = oe_http_new(&f.cfg, &h, err, sizeof err);
        if (rc != OE_OK)
            OE_FAIL_("%s: %s", hosts[i], err);
        else
            ASSERT_TRUE(oe_http_port(h) > 0);
        oe_http_free(h);
        close_fixture(&f);
    }
}

/* The port is checked when the server is created, and the error names the
 * address and the system's reason. */
static void test_new_port_in_use(void)
{
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(busy, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(busy, 1), 0);
    ASSERT_EQ(getsockname(busy, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin_port);
    fixture f;
    if (open_fixture(&f, "127.0.0.1", port) == 0) {
        char err[300] = "", want[64];
        oe_http *h = NULL;
        ASSERT_EQ(oe_http_new(&f.cfg, &h, err, sizeof err), OE_EIO);
        ASSERT_TRUE(h == NULL);
        snprintf(want, sizeof want, "cannot listen on 127.0.0.1:%d: ", port);
        ASSERT_CONTAINS(err, want);
        ASSERT_CONTAINS(err, "Address already in use");
        close_fixture(&f);
    }
    close(busy);
}

static void test_new_bad_host(void)
{
    fixture f;
    if (open_fixture(&f, "no-such-host.invalid", 0) != 0)
        return;
    char err[300] = "";
    oe_http *h = NULL;
    ASSERT_EQ(oe_http_new(&f.cfg, &h, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no-such-host.invalid");
    f.cfg.host = "";
    ASSERT_EQ(oe_http_new(&f.cfg, &h, err, sizeof err), OE_EINVAL);
    close_fixture(&f);
}

/* new -> start -> stop -> free, and free of a server never started. */
static void test_lifecycle(void)
{
    fixture f;
    if (open_fixture(&f, "127.0.0.1", 0) != 0)
        return;
    char err[300] = "";
    oe_http *h = NULL;
    ASSERT_EQ(oe_http_new(&f.cfg, &h, err, sizeof err), OE_OK);
    oe_http_free(h);
    h = NULL;
    ASSERT_EQ(oe_http_new(&f.cfg, &h, err, sizeof err), OE_OK);
    if (h) {
        ASSERT_EQ(oe_http_start(h, err, sizeof err), OE_OK);
        ASSERT_EQ(oe_http_start(h, err, sizeof err), OE_EINVAL);
        /* The port answers while the server runs. */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)oe_http_port(h));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
        const char req[] = "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        ASSERT_EQ(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
        char buf[512] = "";
        ssize_t n = read(fd, buf, sizeof buf - 1);
        ASSERT_TRUE(n > 12);
        ASSERT_TRUE(strncmp(buf, "HTTP/1.1 200", 12) == 0);
        close(fd);
        oe_http_stop(h);
        oe_http_stop(h);
    }
    oe_http_free(h);
    close_fixture(&f);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/oe-test-http-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(test_receipt_answer_valid);
    RUN_TEST(test_receipt_answer_invalid_result);
    RUN_TEST(test_receipt_answer_over_cap);
    RUN_TEST(test_receipt_answer_tiny_cap);
    RUN_TEST(test_rejection_answer_over_cap);
    RUN_TEST(test_outcome_answer_over_cap);
    RUN_TEST(test_new_binds_names_and_ipv6);
    RUN_TEST(test_new_port_in_use);
    RUN_TEST(test_new_bad_host);
    RUN_TEST(test_lifecycle);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return TEST_REPORT();
}
