/* Tests engine/engine.c with engine/store.c on a real SQLite file: replay,
 * conflicts, the order of approval checks, single-use approvals, batches in
 * one transaction, persistence across reopening. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/approval.h"
#include "engine/engine.h"
#include "engine/ids.h"
#include "engine/metrics.h"
#include "engine/status.h"
#include "ledger/ledger.h"
#include "tests/keys.h"
#include "tests/test.h"

static char dir[64];
static int db_counter;

/* A fresh database path in this test's temporary directory. */
static void db_path(char *out, size_t n)
{
    snprintf(out, n, "%s/t%d.db", dir, db_counter++);
}

typedef struct {
    oe_store *store;
    oe_engine *engine;
} fixture;

static void open_fixture(fixture *f, const char *path, const oe_engine_config *cfg)
{
    char err[300];
    f->store = NULL;
    f->engine = NULL;
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &f->store, err, sizeof err) != 0) {
        OE_FAIL_("store: %s", err);
        return;
    }
    if (oe_engine_new(cfg, f->store, &f->engine, err, sizeof err) != 0)
        OE_FAIL_("engine: %s", err);
    else
        oe_engine_start(f->engine);
}

static void close_fixture(fixture *f)
{
    oe_engine_free(f->engine);
    oe_store_free(f->store);
}

/* Runs one JSON body at time now; fills o (initialised by the caller). */
static void run_body(fixture *f, const char *body, double now, oe_outcome *o)
{
    test_run_body(f->engine, body, now, o);
}

static const oe_engine_config demo = {.tenant = "", .allowed_actions = ""};

static void test_execute_replay_conflict(void)
{
    char path[128];
    db_path(path, sizeof path);
    fixture f;
    open_fixture(&f, path, &demo);
    oe_outcome o;
    oe_outcome_init(&o);

    run_body(&f, "{\"action\":\"echo\",\"payload\":{\"msg\":\"hi\"},\"nonce\":\"n-1\"}", 1000, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.id, "6f3e5109-03e2-87b5-85d1-a9c98360dc73");
    ASSERT_STREQ(o.result_json.data, "{\"echo\": {\"msg\": \"hi\"}}");
    ASSERT_STREQ(o.receipt, "cbbd2992eef15b2d3b33eeef7e1451a3785f2437028b3c851943a4745eb28d6e");
    ASSERT_EQ(o.approved, 1);
    ASSERT_TRUE(o.approval_id == NULL);

    /* Same nonce, same request (keys in another order): replayed. */
    run_body(&f, "{\"nonce\":\"n-1\",\"payload\":{\"msg\":\"hi\"},\"action\":\"echo\"}", 2000, &o);
    ASSERT_EQ(o.status, OE_STATUS_REPLAYED);
    ASSERT_STREQ(o.id, "6f3e5109-03e2-87b5-85d1-a9c98360dc73");
    ASSERT_STREQ(o.receipt, "cbbd2992eef15b2d3b33eeef7e1451a3785f2437028b3c851943a4745eb28d6e");
    ASSERT_STREQ(o.result_json.data, "{\"echo\": {\"msg\": \"hi\"}}");

    /* Same nonce, other request: conflict. */
    run_body(&f, "{\"action\":\"echo\",\"payload\":{\"msg\":\"ho\"},\"nonce\":\"n-1\"}", 2000, &o);
    ASSERT_EQ(o.status, OE_STATUS_REJECTED);
    ASSERT_EQ(o.error, OE_ERR_NONCE_CONFLICT);
    ASSERT_STREQ(o.id, "");

    /* A rejected attempt does not use up its nonce. */
    run_body(&f, "{\"action\":\"add\",\"payload\":{\"a\":\"x\"},\"nonce\":\"n-2\"}", 2000, &o);
    ASSERT_EQ(o.error, OE_ERR_INVALID_REQUEST);
    run_body(&f, "{\"action\":\"nope\",\"nonce\":\"n-2\"}", 2000, &o);
    ASSERT_EQ(o.error, OE_ERR_UNKNOWN_ACTION);
    ASSERT_CONTAINS(o.detail, "Unknown action: nope");
    run_body(&f, "{\"action\":\"add\",\"payload\":{\"a\":2,\"b\":3},\"nonce\":\"n-2\"}", 2000, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.result_json.data, "{\"sum\": 5}");

    /* Malformed attempts are recorded too. */
    run_body(&f, "{\"action\":", 2000, &o);
    ASSERT_EQ(o.error, OE_ERR_MALFORMED);
    ASSERT_EQ(oe_store_count_executions(f.store), 2);
    ASSERT_EQ(oe_store_count_rejections(f.store), 4);
    close_fixture(&f);

    /* Reopened: the stored answer is still there. */
    open_fixture(&f, path, &demo);
    run_body(&f, "{\"action\":\"echo\",\"payload\":{\"msg\":\"hi\"},\"nonce\":\"n-1\"}", 3000, &o);
    ASSERT_EQ(o.status, OE_STATUS_REPLAYED);
    ASSERT_STREQ(o.receipt, "cbbd2992eef15b2d3b33eeef7e1451a3785f2437028b3c851943a4745eb28d6e");
    oe_execution e;
    char err[200];
    ASSERT_EQ(
        oe_store_find_by_id(f.store, "6f3e5109-03e2-87b5-85d1-a9c98360dc73", &e, err, sizeof err),
        1);
    ASSERT_STREQ(e.nonce, "n-1");
    ASSERT_TRUE(e.created_at == 1000);
    oe_execution_clear(&e);
    ASSERT_EQ(oe_store_find_by_id(f.store, "nope", &e, err, sizeof err), 0);
    oe_outcome_clear(&o);
    close_fixture(&f);
}

static void test_allow_list(void)
{
    char path[128];
    db_path(path, sizeof path);
    oe_engine_config cfg = demo;
    cfg.allowed_actions = " echo ,, ";
    fixture f;
    open_fixture(&f, path, &cfg);
    const char *const *names;
    ASSERT_EQ(oe_engine_allow_list(f.engine, &names), 1);
    ASSERT_STREQ(names[0], "echo");
    oe_outcome o;
    oe_outcome_init(&o);
    run_body(&f, "{\"action\":\"echo\",\"nonce\":\"a\"}", 1, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    run_body(&f, "{\"action\":\"add\",\"nonce\":\"b\"}", 1, &o);
    ASSERT_EQ(o.error, OE_ERR_NOT_ALLOWED);
    ASSERT_CONTAINS(o.detail, "not allowed");
    /* Substrings of allowed names are not allowed, nor unknown names (the
     * allow-list comes before the action lookup, docs/protocol.md §4). */
    run_body(&f, "{\"action\":\"ech\",\"nonce\":\"c\"}", 1, &o);
    ASSERT_EQ(o.error, OE_ERR_NOT_ALLOWED);
    run_body(&f, "{\"action\":\"ec\",\"nonce\":\"d\"}", 1, &o);
    ASSERT_EQ(o.error, OE_ERR_NOT_ALLOWED);
    oe_outcome_clear(&o);
    close_fixture(&f);

    /* The list keeps its configured order (not the registry's), without
     * repeats; an open engine has none. */
    cfg.allowed_actions = "echo, add,echo ,add";
    open_fixture(&f, path, &cfg);
    ASSERT_EQ(oe_engine_allow_list(f.engine, &names), 2);
    ASSERT_STREQ(names[0], "echo");
    ASSERT_STREQ(names[1], "add");
    close_fixture(&f);
    open_fixture(&f, path, &demo);
    ASSERT_EQ(oe_engine_allow_list(f.engine, &names), 0);
    close_fixture(&f);
}

/* Regression: the allow-list was a ",a,b," string searched with strstr, so
 * ",add" read one byte before a heap block and "add,echo" passed it. */
static void test_allow_list_exact(void)
{
    char path[128];
    db_path(path, sizeof path);
    oe_engine_config cfg = demo;
    cfg.allowed_actions = "add,echo";
    fixture f;
    open_fixture(&f, path, &cfg);
    oe_outcome o;
    oe_outcome_init(&o);
    const char *names[] = {",add", "add,echo", "add,", ",", "echo ", " add", "add\\u0000"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char body[200];
        snprintf(body, sizeof body, "{\"action\":\"%s\",\"nonce\":\"x%zu\"}", names[i], i);
        run_body(&f, body, 1, &o);
        if (i + 1 < sizeof names / sizeof names[0])
            ASSERT_EQ(o.error, OE_ERR_NOT_ALLOWED);
        else
            ASSERT_EQ(o.error, OE_ERR_INVALID_REQUEST); /* NUL in a name */
    }
    run_body(&f, "{\"action\":\"add\",\"nonce\":\"ok\"}", 1, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    oe_outcome_clear(&o);
    close_fixture(&f);
}

/* Start-up refuses allow-lists that name no registered action exactly. */
static void test_allow_list_refused(void)
{
    char path[128];
    db_path(path, sizeof path);
    oe_store *store;
    char err[300];
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &store, err, sizeof err) != 0) {
        OE_FAIL_("store: %s", err);
        return;
    }
    const struct {
        const char *list, *reason;
    } bad[] = {
        {"echo,ec", "\"ec\" is not a registered action"},
        {"ad d", "\"ad d\" is not a registered action"},
        {"add;echo", "\"add;echo\" is not a registered action"},
        {"add\techo", "is not a registered action"},
        {",", "names no action"},
        {" , ,", "names no action"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        oe_engine_config cfg = demo;
        cfg.allowed_actions = bad[i].list;
        oe_engine *e = NULL;
        err[0] = '\0';
        ASSERT_EQ(oe_engine_new(&cfg, store, &e, err, sizeof err), OE_EINVAL);
        ASSERT_TRUE(e == NULL);
        ASSERT_CONTAINS(err, bad[i].reason);
        ASSERT_CONTAINS(err, "OPENEXEC_ALLOWED_ACTIONS");
    }
    oe_store_free(store);
}

/* A request body with an HMAC artifact signed by secret. */
static void signed_body(char *out, size_t n, const char *nonce, const char *payload,
                        const char *approval_id, const char *secret, const char *tenant,
                        const char *issuer, const char *issued_at, const char *hash_payload)
{
    char err[200], hash[65], sig[65];
    oe_json_doc *d = test_json_parse(hash_payload, strlen(hash_payload), 0, err, sizeof err);
    oe_request_hash("echo", 4, oe_json_root(d), hash);
    oe_json_doc_free(d);
    oe_artifact a = {.approval_id = approval_id,
                     .action_hash = hash,
                     .issued_by = issuer,
                     .issued_at = issued_at,
                     .tenant_id = tenant};
    oe_approval_sign_hmac(secret, &a, sig);
    snprintf(out, n,
             "{\"action\":\"echo\",\"payload\":%s,\"nonce\":\"%s\",\"approval_artifact\":{"
             "\"approval_id\":\"%s\",\"action_hash\":\"%s\",\"signature\":\"%s\","
             "\"issued_by\":\"%s\",\"issued_at\":\"%s\",\"tenant_id\":\"%s\"}}",
             payload, nonce, approval_id, hash, sig, issuer, issued_at, tenant);
}

/* A request body with an Ed25519 artifact as the original service's newest
 * clients mint it: no issued_by, naive UTC times, any TTL; key_id when
 * given (NULL: none). */
static void ed25519_body(char *out, size_t n, const char *nonce, const char *approval_id,
                         const char *priv, const char *issued_at, const char *expires_at,
                         const char *key_id)
{
    char err[200], hash[65], sig[128];
    oe_json_doc *d = test_json_parse("{\"m\":1}", 7, 0, err, sizeof err);
    oe_request_hash("echo", 4, oe_json_root(d), hash);
    oe_json_doc_free(d);
    oe_artifact a = {.approval_id = approval_id,
                     .action_hash = hash,
                     .issued_at = issued_at,
                     .tenant_id = "t1",
                     .expires_at = expires_at};
    ASSERT_EQ(oe_approval_sign_ed25519(priv, &a, sig, sizeof sig, err, sizeof err), 0);
    snprintf(out, n,
             "{\"action\":\"echo\",\"payload\":{\"m\":1},\"nonce\":\"%s\",\"approval_artifact\":{"
             "\"approval_id\":\"%s\",\"tenant_id\":\"t1\",\"action_hash\":\"%s\","
             "\"issued_at\":\"%s\",\"expires_at\":\"%s\",\"signature\":\"%s\"%s%s%s}}",
             nonce, approval_id, hash, issued_at, expires_at, sig, key_id ? ",\"key_id\":\"" : "",
             key_id ? key_id : "", key_id ? "\"" : "");
}

/* Part of docs/protocol.md §4 for the newest clients and rotation: Ed25519 artifacts
 * need no issued_by and are bounded by expires_at alone; HMAC ones still
 * need issued_by "clawshield" and the 300 s age; several keys and secrets
 * are each tried; key_id picks one key. */
static void test_newest_clients_and_rotation(void)
{
    char *priv[4], *pub[4], pems[4096], path[128], body[2048], err[300];
    for (int i = 0; i < 4; i++)
        test_make_ed25519(&priv[i], &pub[i]);
    snprintf(pems, sizeof pems, "%s%s%s", pub[0], pub[1], pub[2]);
    oe_engine_config cfg = {.clawshield = 1,
                            .secret = "retired-secret-000000000000000000,s3cret",
                            .public_key_pem = pems,
                            .tenant = "t1",
                            .allowed_actions = "echo"};
    db_path(path, sizeof path);
    fixture f;
    open_fixture(&f, path, &cfg);
    const oe_approval_keys *keys = oe_engine_approval_keys(f.engine);
    ASSERT_EQ(oe_approval_keys_ed25519_count(keys), 3);
    ASSERT_EQ(oe_approval_keys_hmac_count(keys), 2);
    const double issued = 1795611600; /* 2026-11-25T13:00:00 */
    const char *at = "2026-11-25T13:00:00.123456", *hour = "2026-11-25T14:00:00.123456";
    oe_outcome o;
    oe_outcome_init(&o);

    /* Signed by key 2 of 3, one-hour TTL, 50 minutes later: executed. */
    ed25519_body(body, sizeof body, "e1", "ea1", priv[1], at, hour, NULL);
    run_body(&f, body, issued + 3000, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.detail, "");
    /* Replayed, and its approval refused under another nonce. */
    run_body(&f, body, issued + 3000, &o);
    ASSERT_EQ(o.status, OE_STATUS_REPLAYED);
    ed25519_body(body, sizeof body, "e2", "ea1", priv[1], at, hour, NULL);
    run_body(&f, body, issued + 3001, &o);
    ASSERT_CONTAINS(o.detail, "already used");
    /* By a key that is not configured: refused. */
    ed25519_body(body, sizeof body, "e3", "ea3", priv[3], at, hour, NULL);
    run_body(&f, body, issued + 10, &o);
    ASSERT_EQ(o.error, OE_ERR_APPROVAL_INVALID);
    ASSERT_CONTAINS(o.detail, "Invalid signature");
    /* key_id of key 3: that key checks it. */
    char id[65];
    snprintf(id, sizeof id, "%s", oe_approval_keys_ed25519_id(keys, 2));
    ed25519_body(body, sizeof body, "e4", "ea4", priv[2], at, hour, id);
    run_body(&f, body, issued + 10, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    /* An unknown key_id: refused, saying so. */
    ed25519_body(body, sizeof body, "e5", "ea5", priv[2], at, hour,
                 "0000000000000000000000000000000000000000000000000000000000000000");
    run_body(&f, body, issued + 10, &o);
    ASSERT_CONTAINS(o.detail, "Invalid signature");
    ASSERT_CONTAINS(o.detail, "key_id is unknown");
    /* Expired; issued 60 s in the future. */
    ed25519_body(body, sizeof body, "e6", "ea6", priv[0], at, hour, NULL);
    run_body(&f, body, issued + 3601, &o);
    ASSERT_CONTAINS(o.detail, "expired");
    run_body(&f, body, issued - 60, &o);
    ASSERT_CONTAINS(o.detail, "expired");
    ASSERT_CONTAINS(o.detail, "future");

    /* HMAC with the second secret: executed when 10 s old, refused when
     * 301 s old, refused without issued_by (step 6). */
    signed_body(body, sizeof body, "h1", "{\"m\":1}", "ha1", "s3cret", "t1", "clawshield",
                "2026-11-25T13:00:00", "{\"m\":1}");
    run_body(&f, body, issued + 301, &o);
    ASSERT_CONTAINS(o.detail, "expired");
    run_body(&f, body, issued + 10, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    char hash[65], sig[65];
    oe_json_doc *d = test_json_parse("{\"m\":1}", 7, 0, err, sizeof err);
    oe_request_hash("echo", 4, oe_json_root(d), hash);
    oe_json_doc_free(d);
    oe_artifact a = {.approval_id = "ha2",
                     .action_hash = hash,
                     .issued_at = "2026-11-25T13:00:00",
                     .tenant_id = "t1"};
    oe_approval_sign_hmac("s3cret", &a, sig);
    snprintf(body, sizeof body,
             "{\"action\":\"echo\",\"payload\":{\"m\":1},\"nonce\":\"h2\",\"approval_artifact\":{"
             "\"approval_id\":\"ha2\",\"action_hash\":\"%s\",\"signature\":\"%s\","
             "\"issued_at\":\"2026-11-25T13:00:00\",\"tenant_id\":\"t1\"}}",
             hash, sig);
    run_body(&f, body, issued + 10, &o);
    ASSERT_EQ(o.error, OE_ERR_APPROVAL_INVALID);
    ASSERT_CONTAINS(o.detail, "Unknown issuer");
    oe_outcome_clear(&o);
    close_fixture(&f);
    for (int i = 0; i < 4; i++) {
        free(priv[i]);
        free(pub[i]);
    }
}

static void test_clawshield_checks(void)
{
    char path[128], body[2048];
    db_path(path, sizeof path);
    oe_engine_config cfg = {
        .clawshield = 1, .secret = "s3cret", .tenant = "t1", .allowed_actions = "echo"};
    fixture f;
    open_fixture(&f, path, &cfg);
    ASSERT_EQ(oe_engine_signature_verification(f.engine), 1);
    const double now = 1795611600 + 10; /* 10 s after issued_at below */
    const char *at = "2026-11-25T13:00:00Z";
    oe_outcome o;
    oe_outcome_init(&o);

    run_body(&f, "{\"action\":\"echo\",\"nonce\":\"x\"}", now, &o);
    ASSERT_EQ(o.error, OE_ERR_APPROVAL_INVALID);
    ASSERT_CONTAINS(o.detail, "artifact required");

    signed_body(body, sizeof body, "n1", "{\"m\":1}", "ap1", "s3cret", "t1", "clawshield", at,
                "{\"m\":2}");
    run_body(&f, body, now, &o);
    ASSERT_CONTAINS(o.detail, "hash mismatch");

    signed_body(body, sizeof body, "n1", "{\"m\":1}", "ap1", "wrong", "t1", "clawshield", at,
                "{\"m\":1}");
    run_body(&f, body, now, &o);
    ASSERT_CONTAINS(o.detail, "Invalid signature");

    signed_body(body, sizeof body, "n1", "{\"m\":1}", "ap1", "s3cret", "t2", "clawshield", at,
                "{\"m\":1}");
    run_body(&f, body, now, &o);
    ASSERT_CONTAINS(o.detail, "Tenant mismatch");

    signed_body(body, sizeof body, "n1", "{\"m\":1}", "ap1", "s3cret", "t1", "someone", at,
                "{\"m\":1}");
    run_body(&f, body, now, &o);
    ASSERT_CONTAINS(o.detail, "Unknown issuer");

    signed_body(body, sizeof body, "n1", "{\"m\":1}", "ap1", "s3cret", "t1", "clawshield", at,
                "{\"m\":1}");
    run_body(&f, body, now + 300, &o);
    ASSERT_CONTAINS(o.detail, "expired");
    run_body(&f, body, now - 50, &o);
    ASSERT_CONTAINS(o.detail, "expired");

    run_body(&f, body, now, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.approval_id, "ap1");
    char id[37], hash[65];
    ASSERT_EQ(oe_request_hash("echo", 4, NULL, hash), 0);
    (void)id;

    /* Replay after the artifact expired: the original answer. */
    run_body(&f, body, now + 10000, &o);
    ASSERT_EQ(o.status, OE_STATUS_REPLAYED);
    ASSERT_STREQ(o.approval_id, "ap1");

    /* The same approval under another nonce: already used. */
    signed_body(body, sizeof body, "n2", "{\"m\":1}", "ap1", "s3cret", "t1", "clawshield", at,
                "{\"m\":1}");
    run_body(&f, body, now, &o);
    ASSERT_EQ(o.error, OE_ERR_APPROVAL_INVALID);
    ASSERT_CONTAINS(o.detail, "already used");

    /* Not allowed comes before the artifact checks. */
    run_body(&f,
             "{\"action\":\"add\",\"nonce\":\"n3\",\"approval_artifact\":{\"approval_id\":\"a\","
             "\"action_hash\":\"h\",\"signature\":\"s\",\"issued_by\":\"clawshield\","
             "\"issued_at\":\"t\",\"tenant_id\":\"t1\"}}",
             now, &o);
    ASSERT_EQ(o.error, OE_ERR_NOT_ALLOWED);
    oe_outcome_clear(&o);
    close_fixture(&f);

    /* Clawshield without any key cannot start. */
    oe_engine_config nokey = {.clawshield = 1, .tenant = "", .allowed_actions = ""};
    oe_store *s;
    oe_engine *e;
    char err[300];
    db_path(path, sizeof path);
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    ASSERT_EQ(oe_engine_new(&nokey, s, &e, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "CLAWSHIELD_SECRET_KEY");
    oe_store_free(s);
}

/* Request i of test_parallel_checks_agree: by i % 8, signed with HMAC,
 * signed with Ed25519, HMAC with the wrong secret, an Ed25519 signature of
 * other fields, an artifact of another request, an Ed25519 approval used by
 * request i - 4 already, request i - 6 again (a replay), and an action not
 * allowed. */
static void mixed_body(char *out, size_t n, int i, const char *priv)
{
    char nonce[32], approval[32], payload[64], hash[65], sig[128], err[200];
    int kind = i % 8;
    snprintf(nonce, sizeof nonce, "pn-%d", kind == 6 ? i - 6 : i);
    snprintf(approval, sizeof approval, "pa-%d", kind == 5 ? i - 4 : kind == 6 ? i - 6 : i);
    snprintf(payload, sizeof payload, "{\"i\":%d}", kind == 6 ? i - 6 : i);
    const char *action = kind == 7 ? "add" : "echo";
    oe_json_doc *d = test_json_parse(payload, strlen(payload), 0, err, sizeof err);
    oe_request_hash(action, strlen(action), oe_json_root(d), hash);
    oe_json_doc_free(d);
    if (kind == 4)
        hash[0] = hash[0] == 'a' ? 'b' : 'a';
    int ed = kind == 1 || kind == 3 || kind == 5;
    oe_artifact a = {.approval_id = kind == 3 ? "other" : approval,
                     .action_hash = hash,
                     .issued_by = "clawshield",
                     .issued_at = "2026-11-25T13:00:00Z",
                     .tenant_id = "t1",
                     .expires_at = ed ? "2026-11-25T13:05:00Z" : NULL};
    if (ed)
        ASSERT_EQ(oe_approval_sign_ed25519(priv, &a, sig, sizeof sig, err, sizeof err), 0);
    else
        oe_approval_sign_hmac(kind == 2 ? "wrong" : "s3cret", &a, sig);
    snprintf(out, n,
             "{\"action\":\"%s\",\"payload\":%s,\"nonce\":\"%s\",\"approval_artifact\":{"
             "\"approval_id\":\"%s\",\"action_hash\":\"%s\",\"signature\":\"%s\","
             "\"issued_by\":\"clawshield\",\"issued_at\":\"%s\",\"tenant_id\":\"t1\"%s%s%s}}",
             action, payload, nonce, approval, hash, sig, a.issued_at,
             ed ? ",\"expires_at\":\"" : "", ed ? a.expires_at : "", ed ? "\"" : "");
}

/* A large batch is hashed and its signatures checked by several threads
 * before its transaction (OE_ENGINE_PARALLEL_MIN): every outcome equals the
 * one of the same requests answered one by one on the caller's thread. */
static void test_parallel_checks_agree(void)
{
    char *priv, *pub;
    test_make_ed25519(&priv, &pub);
    oe_engine_config cfg = {.clawshield = 1,
                            .secret = "s3cret",
                            .public_key_pem = pub,
                            .tenant = "t1",
                            .allowed_actions = "echo"};
    char p1[128], p2[128], err[300];
    db_path(p1, sizeof p1);
    db_path(p2, sizeof p2);
    fixture par, one;
    open_fixture(&par, p1, &cfg);
    open_fixture(&one, p2, &cfg);
    enum { N = 3 * OE_ENGINE_PARALLEL_MIN };
    static char bodies[N][2048];
    static oe_batch_item items[N];
    static oe_batch_item *ptrs[N];
    for (int i = 0; i < N; i++) {
        mixed_body(bodies[i], sizeof bodies[i], i, priv);
        memset(&items[i], 0, sizeof items[i]);
        ASSERT_EQ(
            test_request_from_json(bodies[i], strlen(bodies[i]), &items[i].req, err, sizeof err),
            0);
        oe_outcome_init(&items[i].out);
        ptrs[i] = &items[i];
    }
    const double now = 1795611600 + 10;
    ASSERT_EQ(oe_engine_process(par.engine, ptrs, N, now, NULL, err, sizeof err), 0);
    int by_kind[8][3] = {{0}};
    oe_outcome o;
    oe_outcome_init(&o);
    for (int i = 0; i < N; i++) {
        run_body(&one, bodies[i], now, &o);
        const oe_outcome *p = &items[i].out;
        ASSERT_EQ(p->status, o.status);
        ASSERT_EQ(p->error, o.error);
        ASSERT_STREQ(p->detail, o.detail);
        ASSERT_STREQ(p->id, o.id);
        ASSERT_STREQ(p->receipt, o.receipt);
        ASSERT_STREQ(p->request_hash, o.request_hash);
        by_kind[i % 8][p->status]++;
        if (i % 8 == 3)
            ASSERT_CONTAINS(p->detail, "Ed25519 verification failed");
        if (i % 8 == 5)
            ASSERT_CONTAINS(p->detail, "already used");
    }
    /* Each kind came out as it should, so the comparison compared verdicts. */
    const int per = N / 8;
    const oe_status expect[8] = {OE_STATUS_EXECUTED, OE_STATUS_EXECUTED, OE_STATUS_REJECTED,
                                 OE_STATUS_REJECTED, OE_STATUS_REJECTED, OE_STATUS_REJECTED,
                                 OE_STATUS_REPLAYED, OE_STATUS_REJECTED};
    for (int k = 0; k < 8; k++)
        ASSERT_EQ(by_kind[k][expect[k]], per);
    ASSERT_EQ(oe_store_count_executions(par.store), 2 * per);
    for (int i = 0; i < N; i++) {
        oe_request_clear(&items[i].req);
        oe_outcome_clear(&items[i].out);
    }
    oe_outcome_clear(&o);
    close_fixture(&par);
    close_fixture(&one);
    free(priv);
    free(pub);
}

/* What the complete hook saw of each item of a batch (at most 8): how
 * often it ran, and the outcome's status then. */
typedef struct hook_log {
    oe_batch_item *items; /* the batch's items, in order */
    atomic_int calls[8];
    int status[8];
} hook_log;

static int log_complete(void *ctx, oe_batch_item *it)
{
    hook_log *h = ctx;
    size_t i = (size_t)(it - h->items);
    atomic_fetch_add(&h->calls[i], 1);
    h->status[i] = (int)it->out.status;
    return 0;
}

/* A batch is one transaction; duplicates inside it see each other. */
static void test_batch(void)
{
    char path[128];
    db_path(path, sizeof path);
    fixture f;
    open_fixture(&f, path, &demo);
    const char *bodies[] = {
        "{\"action\":\"add\",\"payload\":{\"a\":1},\"nonce\":\"b1\"}",
        "{\"action\":\"add\",\"payload\":{\"a\":1},\"nonce\":\"b1\"}",
        "{\"action\":\"add\",\"payload\":{\"a\":2},\"nonce\":\"b1\"}",
        "{broken",
        "{\"action\":\"echo\",\"nonce\":\"b2\"}",
    };
    enum { N = 5 };
    oe_batch_item items[N];
    oe_batch_item *ptrs[N];
    oe_outcome *outs[N];
    char reasons[N][200];
    hook_log h = {.items = items};
    for (int i = 0; i < N; i++) {
        atomic_init(&h.calls[i], 0);
        h.status[i] = -1;
    }
    for (int i = 0; i < N; i++) {
        memset(&items[i], 0, sizeof items[i]);
        items[i].complete = log_complete; /* once each, on its final verdict */
        items[i].complete_ctx = &h;
        items[i].decode_error = (oe_error_code)test_request_from_json(
            bodies[i], strlen(bodies[i]), &items[i].req, reasons[i], 200);
        items[i].decode_detail = reasons[i];
        oe_outcome_init(&items[i].out);
        ptrs[i] = &items[i];
        outs[i] = &items[i].out;
    }
    char err[300];
    ASSERT_EQ(oe_engine_process(f.engine, ptrs, N, 5, NULL, err, sizeof err), 0);
    ASSERT_EQ(outs[0]->status, OE_STATUS_EXECUTED);
    ASSERT_EQ(outs[1]->status, OE_STATUS_REPLAYED);
    ASSERT_STREQ(outs[1]->receipt, outs[0]->receipt);
    ASSERT_EQ(outs[2]->error, OE_ERR_NONCE_CONFLICT);
    ASSERT_EQ(outs[3]->error, OE_ERR_MALFORMED);
    ASSERT_CONTAINS(outs[3]->detail, "invalid JSON");
    ASSERT_EQ(outs[4]->status, OE_STATUS_EXECUTED);
    ASSERT_EQ(oe_store_count_executions(f.store), 2);
    ASSERT_EQ(oe_store_count_rejections(f.store), 2);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(atomic_load(&h.calls[i]), 1);
        ASSERT_EQ(h.status[i], (int)outs[i]->status);
    }
    for (int i = 0; i < N; i++) {
        oe_request_clear(&items[i].req);
        oe_outcome_clear(&items[i].out);
    }
    close_fixture(&f);
}

/* Two stores, same requests: the same ids and receipts. */
static void test_two_stores_agree(void)
{
    char p1[128], p2[128];
    db_path(p1, sizeof p1);
    db_path(p2, sizeof p2);
    fixture a, b;
    open_fixture(&a, p1, &demo);
    open_fixture(&b, p2, &demo);
    oe_outcome x, y;
    oe_outcome_init(&x);
    oe_outcome_init(&y);
    const char *body =
        "{\"action\":\"echo\",\"payload\":{\"n\":[1e16,1e-07,-0.0]},\"nonce\":\"z\"}";
    run_body(&a, body, 1, &x);
    run_body(&b, body, 99, &y);
    ASSERT_STREQ(x.id, y.id);
    ASSERT_STREQ(x.receipt, y.receipt);
    ASSERT_STREQ(x.result_json.data, "{\"echo\": {\"n\": [1e+16, 1e-07, -0.0]}}");
    oe_outcome_clear(&x);
    oe_outcome_clear(&y);
    close_fixture(&a);
    close_fixture(&b);
}

/* Results too large for a receipt are refused before anything is stored;
 * names cut short in details stay valid UTF-8. */
static void test_limits(void)
{
    char path[128];
    db_path(path, sizeof path);
    fixture f;
    open_fixture(&f, path, &demo);
    oe_outcome o;
    oe_outcome_init(&o);
    size_t n = OE_RESULT_MAX_BYTES / 6 + 10; /* each \u00e9 escape is 6 bytes */
    oe_buf body;
    oe_buf_init(&body, 0);
    oe_buf_puts(&body, "{\"action\":\"echo\",\"nonce\":\"big\",\"payload\":{\"m\":\"");
    for (size_t i = 0; i < n; i++)
        oe_buf_puts(&body, "\xc3\xa9");
    oe_buf_puts(&body, "\"}}");
    run_body(&f, body.data, 1, &o);
    ASSERT_EQ(o.error, OE_ERR_INVALID_REQUEST);
    ASSERT_CONTAINS(o.detail, "too large");
    ASSERT_EQ(oe_store_count_executions(f.store), 0);

    /* "x" and 150 two-byte characters: byte 200 is the second byte of a
     * character, so the name is cut at 199. */
    oe_buf_reset(&body);
    oe_buf_puts(&body, "{\"action\":\"x");
    for (int i = 0; i < 150; i++)
        oe_buf_puts(&body, "\xc3\xa9");
    oe_buf_puts(&body, "\",\"nonce\":\"u\"}");
    run_body(&f, body.data, 1, &o);
    ASSERT_EQ(o.error, OE_ERR_UNKNOWN_ACTION);
    ASSERT_TRUE(oe_utf8_valid(o.detail, strlen(o.detail)));
    ASSERT_EQ(strlen(o.detail), strlen("Unknown action: ") + 199);
    oe_buf_free(&body);
    oe_outcome_clear(&o);
    close_fixture(&f);
}

static void test_store_schema_guard(void)
{
    char path[128], err[300];
    db_path(path, sizeof path);
    oe_store *s;
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_FULL, &s, err, sizeof err), 0);
    oe_store_free(s);
    /* A read-only store of a missing file fails cleanly. */
    ASSERT_EQ(
        oe_sqlite_store_new("/nonexistent/dir/x.db", 1, OE_STORE_SYNC_FULL, &s, err, sizeof err),
        OE_ESTORE);
    ASSERT_CONTAINS(err, "x.db");
}

/* Regression: a ledger deleted or replaced under a running writer went
 * unnoticed (records went into the unlinked file). */
static void test_ledger_replaced(void)
{
    char path[128], other[140];
    db_path(path, sizeof path);
    fixture f;
    open_fixture(&f, path, &demo);
    oe_outcome o;
    oe_outcome_init(&o);
    run_body(&f, "{\"action\":\"echo\",\"nonce\":\"r-1\"}", 1, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    /* Replace the file by another database, as a careless restore would. */
    snprintf(other, sizeof other, "%s.new", path);
    oe_store *fresh;
    char err[400];
    ASSERT_EQ(oe_sqlite_store_new(other, 0, OE_STORE_SYNC_NORMAL, &fresh, err, sizeof err), 0);
    oe_store_free(fresh);
    ASSERT_EQ(rename(other, path), 0);
    oe_batch_item item = {0};
    oe_batch_item *items[1] = {&item};
    char reason[200];
    item.decode_error = (oe_error_code)test_request_from_json(
        "{\"action\":\"echo\",\"nonce\":\"r-2\"}", 34, &item.req, reason, sizeof reason);
    oe_outcome_init(&item.out);
    ASSERT_EQ(oe_engine_process(f.engine, items, 1, 2, NULL, err, sizeof err), OE_ESTORE);
    ASSERT_CONTAINS(err, "deleted or replaced");
    /* Deleted outright: the same. */
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(oe_engine_process(f.engine, items, 1, 3, NULL, err, sizeof err), OE_ESTORE);
    ASSERT_CONTAINS(err, "deleted or replaced");
    oe_request_clear(&item.req);
    oe_outcome_clear(&item.out);
    oe_outcome_clear(&o);
    close_fixture(&f);
}

/* Regression: a damaged ledger passed start-up; now quick_check refuses it. */
static void test_ledger_damaged(void)
{
    char path[128];
    db_path(path, sizeof path);
    fixture f;
    open_fixture(&f, path, &demo);
    oe_outcome o;
    oe_outcome_init(&o);
    /* Enough rows for several pages. */
    for (int i = 0; i < 300; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "{\"action\":\"echo\",\"nonce\":\"d-%d\",\"payload\":{\"pad\":\"%0100d\"}}", i, i);
        run_body(&f, body, 1, &o);
    }
    oe_outcome_clear(&o);
    close_fixture(&f);
    /* Scribble over the middle of the file (past the header page). */
    FILE *fp = fopen(path, "r+b");
    ASSERT_TRUE(fp != NULL);
    if (!fp)
        return;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    ASSERT_TRUE(size > 3 * 4096);
    fseek(fp, 4096 + 100, SEEK_SET);
    for (int i = 0; i < 2 * 4096; i++)
        fputc(0x5a, fp);
    fclose(fp);
    oe_store *s = NULL;
    char err[400];
    ASSERT_EQ(oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &s, err, sizeof err), OE_ESTORE);
    ASSERT_TRUE(s == NULL);
    ASSERT_CONTAINS(err, "damaged");
}

/* Status names read back; anything else is no status. */
typedef struct cpus_case {
    int one;            /* keep the thread to one CPU first */
    int helpers, kept;  /* oe_engine_start's, oe_engine_keep_caller's */
    int first, allowed; /* the process's first CPU and how many */
} cpus_case;

/* On a thread of its own (its CPUs are the ones changed). */
static void *cpus_thread(void *arg)
{
    cpus_case *c = arg;
    cpu_set_t set;
    if (c->one) {
        CPU_ZERO(&set);
        CPU_SET(c->first, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    char path[512], err[300];
    db_path(path, sizeof path);
    fixture f = {0};
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &f.store, err, sizeof err) != 0 ||
        oe_engine_new(&demo, f.store, &f.engine, err, sizeof err) != 0) {
        OE_FAIL_("fixture: %s", err);
        c->helpers = -1;
    } else {
        c->helpers = oe_engine_start(f.engine);
        c->kept = oe_engine_keep_caller(f.engine);
    }
    close_fixture(&f);
    return NULL;
}

/* The engine has a helper for each CPU the process may use beyond the
 * first (at most OE_ENGINE_THREADS - 1), not for each the machine has,
 * and the thread that runs batches keeps to the CPU they leave free. */
static void test_helpers_follow_allowed_cpus(void)
{
    cpu_set_t set;
    ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
    cpus_case c = {.first = -1, .allowed = CPU_COUNT(&set)};
    for (int k = 0; k < CPU_SETSIZE && c.first < 0; k++)
        if (CPU_ISSET(k, &set))
            c.first = k;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, cpus_thread, &c), 0);
    pthread_join(t, NULL);
    int want = (c.allowed < OE_ENGINE_THREADS ? c.allowed : OE_ENGINE_THREADS) - 1;
    ASSERT_EQ(c.helpers, want);
    ASSERT_EQ(c.kept, want > 0 ? c.first : -1);
    /* Kept to one CPU (a taskset of one): no helper, kept to nothing. */
    cpus_case one = {.one = 1, .first = c.first, .allowed = 1};
    ASSERT_EQ(pthread_create(&t, NULL, cpus_thread, &one), 0);
    pthread_join(t, NULL);
    ASSERT_EQ(one.helpers, 0);
    ASSERT_EQ(one.kept, -1);
}

static void test_status_names(void)
{
    oe_status st = OE_STATUS_EXECUTED;
    ASSERT_EQ(oe_status_from_name("replayed", 8, &st), OE_OK);
    ASSERT_EQ(st, OE_STATUS_REPLAYED);
    ASSERT_EQ(oe_status_from_name("replay", 6, &st), OE_EINVAL);
    ASSERT_EQ(oe_status_from_name("rejectedx", 9, &st), OE_EINVAL);
    ASSERT_EQ(st, OE_STATUS_REPLAYED);
}

/* /metrics text: whole, or the buffer's failure (its cap here). */
static void test_metrics_render(void)
{
    oe_metrics m;
    oe_metrics_init(&m);
    oe_metrics_commit(&m, 0.002);
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_metrics_render(&m, 1, "test", &b), OE_OK);
    ASSERT_CONTAINS(b.data, "openexec_ready 1");
    ASSERT_CONTAINS(b.data, "openexec_ledger_commit_seconds_count 1");
    oe_buf_free(&b);
    oe_buf_init(&b, 64);
    ASSERT_EQ(oe_metrics_render(&m, 1, "test", &b), OE_ELIMIT);
    ASSERT_EQ(oe_buf_failed(&b), OE_ELIMIT);
    oe_buf_free(&b);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/oe-test-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(test_execute_replay_conflict);
    RUN_TEST(test_allow_list);
    RUN_TEST(test_allow_list_exact);
    RUN_TEST(test_allow_list_refused);
    RUN_TEST(test_ledger_replaced);
    RUN_TEST(test_ledger_damaged);
    RUN_TEST(test_clawshield_checks);
    RUN_TEST(test_newest_clients_and_rotation);
    RUN_TEST(test_parallel_checks_agree);
    RUN_TEST(test_batch);
    RUN_TEST(test_two_stores_agree);
    RUN_TEST(test_limits);
    RUN_TEST(test_store_schema_guard);
    RUN_TEST(test_helpers_follow_allowed_cpus);
    RUN_TEST(test_status_names);
    RUN_TEST(test_metrics_render);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return TEST_REPORT();
}
