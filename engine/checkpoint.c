/* C2SP tlog checkpoints (checkpoint.h). */
#include "checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "json.h"

/* 1 when s[0..n) is a valid origin: non-empty, valid UTF-8, no control
 * characters. */
static int origin_valid(const char *s, size_t n)
{
    if (n == 0 || !oe_utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return 0;
    return 1;
}

oe_rc oe_checkpoint_text(const char *origin, uint64_t size, const unsigned char root[32],
                         oe_buf *out)
{
    if (!origin_valid(origin, strlen(origin)))
        return OE_EINVAL;
    char b64[45];
    oe_base64_encode(root, 32, b64, sizeof b64);
    return oe_buf_printf(out, "%s\n%" PRIu64 "\n%s\n", origin, size, b64);
}

/* The next line of text[*pos..len) without its newline: its start into
 * *line and length into *n. Returns 0, or -1 when no newline ends it. */
static int next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *n)
{
    const char *nl = *pos < len ? memchr(text + *pos, '\n', len - *pos) : NULL;
    if (!nl)
        return -1;
    *line = text + *pos;
    *n = (size_t)(nl - *line);
    *pos += *n + 1;
    return 0;
}

oe_rc oe_checkpoint_parse(const char *text, size_t len, char *origin, size_t origin_cap,
                          uint64_t *size, unsigned char root[32], char *err, size_t errlen)
{
    static const char *const names[3] = {"the origin", "the tree size", "the root hash"};
    const char *line[3];
    size_t n[3], pos = 0;
    for (int i = 0; i < 3; i++) {
        if (next_line(text, len, &pos, &line[i], &n[i]) != 0) {
            snprintf(err, errlen, "checkpoint: no line %d (%s) ending in a newline", i + 1,
                     names[i]);
            return OE_EINVAL;
        }
    }
    if (!origin_valid(line[0], n[0])) {
        snprintf(err, errlen,
                 "checkpoint line 1: the origin is empty, not UTF-8 or holds a control "
                 "character");
        return OE_EINVAL;
    }
    if (n[0] >= origin_cap) {
        snprintf(err, errlen, "checkpoint line 1: the origin is %zu bytes long; at most %zu fit",
                 n[0], origin_cap ? origin_cap - 1 : 0);
        return OE_ELIMIT;
    }
    uint64_t v = 0;
    if (n[1] == 0 || n[1] > 20 || (n[1] > 1 && line[1][0] == '0')) {
        snprintf(err, errlen, "checkpoint line 2: the tree size is %s",
                 n[1] == 0   ? "empty"
                 : n[1] > 20 ? "too long"
                             : "written with a leading zero");
        return OE_EINVAL;
    }
    for (size_t i = 0; i < n[1]; i++) {
        unsigned d = (unsigned char)line[1][i] - '0';
        if (d > 9) {
            snprintf(err, errlen, "checkpoint line 2: the tree size is not a decimal number");
            return OE_EINVAL;
        }
        if (v > (UINT64_MAX - d) / 10) {
            snprintf(err, errlen, "checkpoint line 2: the tree size does not fit in 64 bits");
            return OE_EINVAL;
        }
        v = v * 10 + d;
    }
    /* 32 bytes are 44 base64 characters; re-encoding refuses the forms
     * with non-zero unused bits, so that one root has one text. */
    unsigned char hash[33];
    char again[45];
    int got = n[2] == 44 ? oe_base64_decode(line[2], n[2], hash, sizeof hash) : OE_EINVAL;
    if (got == 32)
        oe_base64_encode(hash, 32, again, sizeof again);
    if (got != 32 || memcmp(again, line[2], 44) != 0) {
        snprintf(err, errlen,
                 "checkpoint line 3: the root hash is not 32 bytes in canonical base64");
        return OE_EINVAL;
    }
    for (size_t no = 4; pos < len; no++) {
        const char *ext;
        size_t ext_len;
        if (next_line(text, len, &pos, &ext, &ext_len) != 0) {
            snprintf(err, errlen, "checkpoint line %zu does not end with a newline", no);
            return OE_EINVAL;
        }
        if (ext_len == 0) {
            snprintf(err, errlen, "checkpoint line %zu: an extension line is empty", no);
            return OE_EINVAL;
        }
    }
    memcpy(origin, line[0], n[0]);
    origin[n[0]] = '\0';
    *size = v;
    memcpy(root, hash, 32);
    return OE_OK;
}
