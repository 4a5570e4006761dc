/* Fuzzes the request decoder of the wire codec (codec/codec.c): Avro
 * single-object messages, Confluent-framed messages and JSON messages, as
 * a hostile producer could put them on the requests topic.
 *
 * The codec claims that its own bounds walk accepts a body before avro-c
 * reads it, so that avro-c never meets a length beyond the message, a
 * truncated string (whose buffer avro-c 1.11.1 leaks), an unknown union or
 * enum index or unbounded nesting. This harness tests that claim: ASan
 * and LeakSanitizer see avro-c's allocations, and libFuzzer's malloc limit
 * turns a huge allocation into a finding.
 *
 * The first byte picks the framing so that mutations spend their time on
 * bodies rather than on guessing headers: 0 the rest is the whole message;
 * 1 the rest follows a single-object header with our fingerprint; 2 the
 * rest follows a Confluent header with the configured schema id.
 *
 * A request the codec accepts must encode again (Avro single-object) and
 * decode to the same request: what the worker accepted, `openexec produce`
 * and the bridge can send.
 */
#include <string.h>

#include "codec/codec.h"
#include "engine/ids.h"
#include "tests/fuzz/fuzz.h"

#define SCHEMA_ID 7

static oe_codec *codec;

/* LeakSanitizer's check at exit reports 52 bytes that avro-c allocates when
 * a codec is made as unreachable while the codec lives (the amount does not
 * grow with the messages decoded, and oe_codec_free releases it): the codec
 * is freed before that check, so that only real leaks are reported. */
static void free_codec(void)
{
    oe_codec_free(codec);
    codec = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[200];
    if (oe_codec_new(SCHEMA_ID, &codec, err, sizeof err) != 0) {
        fprintf(stderr, "oe_codec_new: %s\n", err);
        abort();
    }
    atexit(free_codec);
    return 0;
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const oe_request *x, const oe_request *y)
{
    FUZZ_CHECK(same_str(x->action, y->action) && same_str(x->nonce, y->nonce));
    FUZZ_CHECK(x->has_artifact == y->has_artifact);
    if (x->has_artifact) {
        const oe_artifact *a = &x->artifact, *b = &y->artifact;
        FUZZ_CHECK(same_str(a->approval_id, b->approval_id) &&
                   same_str(a->action_hash, b->action_hash) &&
                   same_str(a->signature, b->signature) && same_str(a->issued_by, b->issued_by) &&
                   same_str(a->issued_at, b->issued_at) && same_str(a->tenant_id, b->tenant_id) &&
                   same_str(a->expires_at, b->expires_at));
    }
    char hx[65], hy[65];
    FUZZ_CHECK(oe_request_hash(x->action, strlen(x->action), x->payload, hx) == 0);
    FUZZ_CHECK(oe_request_hash(y->action, strlen(y->action), y->payload, hy) == 0);
    FUZZ_CHECK(strcmp(hx, hy) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t hdr = 0;
    unsigned char head[10];
    switch (data[0] % 3) {
    case 1: {
        uint64_t fp = oe_codec_request_fingerprint(codec);
        head[0] = 0xC3;
        head[1] = 0x01;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (unsigned char)(fp >> (8 * i));
        hdr = 10;
        break;
    }
    case 2:
        head[0] = 0;
        head[1] = head[2] = head[3] = 0;
        head[4] = SCHEMA_ID;
        hdr = 5;
        break;
    }
    /* The message in an exact-size buffer, so that ASan sees any read past
     * its end. */
    size_t len = hdr + size - 1;
    unsigned char *msg = malloc(len ? len : 1);
    if (!msg)
        return 0;
    memcpy(msg, head, hdr);
    memcpy(msg + hdr, data + 1, size - 1);

    oe_request req;
    oe_decode_verdict verdict;
    oe_error_code code = OE_ERR_NONE;
    char detail[300];
    int rc = oe_codec_decode_request(codec, msg, len, &req, &verdict, &code, detail, sizeof detail);
    free(msg);
    /* Under the fuzzer's memory limit, running out (no verdict) is a finding. */
    if (rc != OE_OK)
        abort();
    switch (verdict) {
    case OE_DECODE_DEAD:
        /* A dead letter keeps nothing and says why. */
        FUZZ_CHECK(code == OE_ERR_MALFORMED && detail[0] != '\0');
        FUZZ_CHECK(!req.action && !req.nonce && !req.doc && !req.has_artifact);
        break;
    case OE_DECODE_REJECTED:
        FUZZ_CHECK(code != OE_ERR_NONE && detail[0] != '\0');
        FUZZ_CHECK(req.payload != NULL);
        /* What a rejection receipt echoes must be text. */
        FUZZ_CHECK(!req.action || oe_utf8_valid(req.action, strlen(req.action)));
        FUZZ_CHECK(!req.nonce || oe_utf8_valid(req.nonce, strlen(req.nonce)));
        break;
    case OE_DECODE_VALID: {
        FUZZ_CHECK(code == OE_ERR_NONE);
        FUZZ_CHECK(req.action && req.action[0] && req.nonce && req.nonce[0]);
        FUZZ_CHECK(req.payload && req.payload->type == OE_JSON_OBJECT);
        oe_buf enc;
        oe_buf_init(&enc, 0);
        char err[300];
        FUZZ_CHECK(oe_codec_encode_request(codec, &req, &enc, err, sizeof err) == 0);
        oe_request back;
        FUZZ_CHECK(oe_codec_decode_request(codec, enc.data, enc.len, &back, &verdict, &code, detail,
                                           sizeof detail) == OE_OK);
        FUZZ_CHECK(verdict == OE_DECODE_VALID);
        check_same(&req, &back);
        oe_request_clear(&back);
        oe_buf_free(&enc);
        break;
    }
    }
    oe_request_clear(&req);
    return 0;
}
