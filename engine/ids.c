/* Derived identifiers (ids.h): request hash, execution id, receipt hash,
 * and the bounded echo of long fields. Pure functions, no state. */
#include "ids.h"

#include <openssl/sha.h>
#include <string.h>

#include "buf.h"
#include "digest.h"

int oe_request_hash_text(const char *action, size_t action_len, const oe_json *payload, oe_buf *b,
                         size_t *payload_off, char out[65])
{
    oe_buf_reset(b);
    int rc = oe_buf_puts(b, "{\"action\":");
    if (rc == 0)
        rc = oe_json_dump_string(b, action, action_len);
    if (rc == 0)
        rc = oe_buf_puts(b, ",\"payload\":");
    *payload_off = b->len;
    if (rc == 0)
        rc = payload ? oe_json_dump(b, payload, OE_JSON_COMPACT) : oe_buf_puts(b, "{}");
    if (rc == 0)
        rc = oe_buf_putc(b, '}');
    if (rc == 0)
        oe_sha256_hex(b->data, b->len, out);
    return rc;
}

int oe_request_hash(const char *action, size_t action_len, const oe_json *payload, char out[65])
{
    oe_buf b;
    oe_buf_init(&b, 0);
    size_t off;
    int rc = oe_request_hash_text(action, action_len, payload, &b, &off, out);
    oe_buf_free(&b);
    return rc;
}

void oe_execution_id(const char *tenant, const char *nonce, const char *request_hash, char out[37])
{
    static const char prefix[] = "openexec.exec.v1";
    unsigned char md[SHA256_DIGEST_LENGTH];
    /* NUL-separated: the prefix's and each field's terminator included. */
    const void *parts[] = {prefix, tenant, nonce, request_hash};
    size_t lens[] = {sizeof prefix, strlen(tenant) + 1, strlen(nonce) + 1, strlen(request_hash)};
    oe_sha256_parts(parts, lens, 4, md);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80);
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    char hex[33];
    oe_hex_encode(md, 16, hex);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
}

size_t oe_cut(const char *s, size_t len, size_t max, char *out)
{
    if (len <= max) {
        memmove(out, s, len);
        out[len] = '\0';
        return len;
    }
    static const char mark[] = "...sha256=";
    char hex[65];
    oe_sha256_hex(s, len, hex); /* before out (perhaps s) is written */
    size_t keep = max - (sizeof mark - 1) - 64;
    /* Never end inside a UTF-8 character: back up over continuation bytes. */
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
        keep--;
    memmove(out, s, keep);
    memcpy(out + keep, mark, sizeof mark - 1);
    memcpy(out + keep + sizeof mark - 1, hex, 64);
    size_t n = keep + sizeof mark - 1 + 64;
    out[n] = '\0';
    return n;
}

size_t oe_echo_cut(const char *s, size_t len, char out[OE_ECHO_MAX_BYTES + 1])
{
    return oe_cut(s, len, OE_ECHO_MAX_BYTES, out);
}

void oe_receipt_hash(const char *id, const char *result_json, size_t result_len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    const void *parts[] = {id, ":", result_json};
    size_t lens[] = {strlen(id), 1, result_len};
    oe_sha256_parts(parts, lens, 3, md);
    oe_hex_encode(md, sizeof md, out);
}
