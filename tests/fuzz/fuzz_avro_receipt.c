/* Fuzzes the receipt decoder of the wire codec (codec/codec.c), which the
 * HTTP bridge and `openexec receipts` run on whatever is on the receipts
 * topic: Avro single-object receipts and JSON receipts.
 *
 * The first byte picks the framing: 0 the rest is the whole message; 1 the
 * rest follows a single-object header with the receipt schema's
 * fingerprint (so that mutations reach the body).
 *
 * A receipt the codec accepts must print as its JSON line, and that line
 * must decode to the same receipt (the `openexec receipts` output is itself
 * a valid JSON receipt); when its error code is one the engine knows, it
 * must also encode as Avro and decode to the same receipt.
 */
#include <string.h>

#include "codec/codec.h"
#include "tests/fuzz/fuzz.h"

static oe_codec *codec;

/* See fuzz_avro_request.c: a live codec's avro-c memory looks leaked to
 * LeakSanitizer's check at exit, so the codec is freed before it. */
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
    if (oe_codec_new(-1, &codec, err, sizeof err) != 0) {
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

static void check_same(const oe_receipt *x, const oe_receipt *y)
{
    FUZZ_CHECK(same_str(x->id, y->id) && same_str(x->nonce, y->nonce) &&
               same_str(x->action, y->action) && same_str(x->request_hash, y->request_hash) &&
               same_str(x->result, y->result) && same_str(x->result_json, y->result_json) &&
               same_str(x->receipt, y->receipt) && same_str(x->detail, y->detail) &&
               same_str(x->approval_id, y->approval_id) && same_str(x->error_code, y->error_code));
    FUZZ_CHECK(x->status == y->status && x->approved == y->approved);
}

/* Decodes buf; it must be accepted and equal to want. */
static void check_decodes_to(const oe_buf *buf, const oe_receipt *want)
{
    oe_receipt back;
    char err[300];
    int rc = oe_codec_decode_receipt(codec, buf->data, buf->len, &back, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "re-encoded receipt refused: %s\n", err);
    FUZZ_CHECK(rc == 0);
    check_same(want, &back);
    oe_receipt_clear(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t hdr = 0;
    unsigned char head[10];
    if (data[0] % 2 == 1) {
        uint64_t fp = oe_codec_receipt_fingerprint(codec);
        head[0] = 0xC3;
        head[1] = 0x01;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (unsigned char)(fp >> (8 * i));
        hdr = 10;
    }
    size_t len = hdr + size - 1;
    unsigned char *msg = malloc(len ? len : 1);
    if (!msg)
        return 0;
    memcpy(msg, head, hdr);
    memcpy(msg + hdr, data + 1, size - 1);

    oe_receipt r;
    char err[300];
    err[0] = '\0';
    int rc = oe_codec_decode_receipt(codec, msg, len, &r, err, sizeof err);
    free(msg);
    if (rc != 0) {
        /* A refusal says why and leaves nothing behind. */
        FUZZ_CHECK((rc == OE_EINVAL || rc == OE_ELIMIT || rc == OE_ENOMEM) && err[0] != '\0');
        FUZZ_CHECK(!r.id && !r.nonce && !r.action && !r.request_hash && !r.result &&
                   !r.result_json && !r.receipt && !r.detail && !r.approval_id && !r.error_code);
        return 0;
    }
    /* The three fields the schema does not let be null; one result text
     * under both names. */
    FUZZ_CHECK(r.nonce && r.action && r.request_hash);
    FUZZ_CHECK(same_str(r.result, r.result_json));
    FUZZ_CHECK((unsigned)r.status <= OE_STATUS_REJECTED);

    oe_buf out;
    oe_buf_init(&out, 0);
    FUZZ_CHECK(oe_receipt_to_json(&r, &out) == 0);
    check_decodes_to(&out, &r);

    oe_error_code code = oe_error_code_from_name(r.error_code);
    if (!r.error_code || code != OE_ERR_NONE) {
        oe_receipt_fields f = {
            .id = r.id,
            .nonce = r.nonce,
            .action = r.action,
            .request_hash = r.request_hash,
            .status = r.status,
            .approved = r.approved,
            .result = r.result,
            .receipt = r.receipt,
            .error = code,
            .detail = r.detail,
            .approval_id = r.approval_id,
        };
        for (int json = 0; json <= 1; json++) {
            oe_buf_reset(&out);
            FUZZ_CHECK(oe_codec_encode_receipt(codec, &f, json, &out, err, sizeof err) == 0);
            check_decodes_to(&out, &r);
        }
    }
    oe_buf_free(&out);
    oe_receipt_clear(&r);
    return 0;
}
