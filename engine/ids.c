/* Derived identifiers (ids.h): request hash, execution id, receipt hash,
 * and the bounded echo of long fields. Pure functions, no state. */
#include "ids.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#include "buf.h"
#include "digest.h"

int oe_request_hash(const char *action, size_t action_len, const oe_json *payload, char out[65])
{
    oe_buf b;
    oe_buf_init(&b, 0);
    int rc = oe_buf_puts(&b, "{\"action\":");
    if (rc == 0)
        rc = oe_json_dump_string(&b, action, action_len);
    if (rc == 0)
        rc = oe_buf_puts(&b, ",\"payload\":");
    if (rc == 0)
        rc = payload ? oe_json_dump(&b, payload, OE_JSON_COMPACT) : oe_buf_puts(&b, "{}");
    if (rc == 0)
        rc = oe_buf_putc(&b, '}');
    if (rc == 0)
        oe_sha256_hex(b.data, b.len, out);
    oe_buf_free(&b);
    return rc;
}

void oe_execution_id(const char *tenant, const char *nonce, const char *request_hash, char out[37])
{
    static const char prefix[] = "openexec.exec.v1";
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, prefix, sizeof prefix); /* includes the NUL separator */
    EVP_DigestUpdate(c, tenant, strlen(tenant) + 1);
    EVP_DigestUpdate(c, nonce, strlen(nonce) + 1);
    EVP_DigestUpdate(c, request_hash, strlen(request_hash));
    EVP_DigestFinal_ex(c, md, NULL);
    EVP_MD_CTX_free(c);
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

size_t oe_echo_cut(const char *s, size_t len, char out[OE_ECHO_MAX_BYTES + 1])
{
    if (len <= OE_ECHO_MAX_BYTES) {
        memcpy(out, s, len);
        out[len] = '\0';
        return len;
    }
    static const char mark[] = "...sha256=";
    size_t keep = OE_ECHO_MAX_BYTES - (sizeof mark - 1) - 64;
    /* Never end inside a UTF-8 character: back up over continuation bytes. */
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
        keep--;
    memcpy(out, s, keep);
    memcpy(out + keep, mark, sizeof mark - 1);
    oe_sha256_hex(s, len, out + keep + sizeof mark - 1);
    size_t n = keep + sizeof mark - 1 + 64;
    out[n] = '\0';
    return n;
}

void oe_receipt_hash(const char *id, const char *result_json, size_t result_len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, id, strlen(id));
    EVP_DigestUpdate(c, ":", 1);
    EVP_DigestUpdate(c, result_json, result_len);
    EVP_DigestFinal_ex(c, md, NULL);
    EVP_MD_CTX_free(c);
    oe_hex_encode(md, sizeof md, out);
}
