/* C2SP signed notes with Ed25519 keys (note.h), after Go's
 * golang.org/x/mod/sumdb/note (note.go): the same texts are accepted and
 * refused, and the same key hashes and signatures come out. */
#include "note.h"

#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "ed25519.h"
#include "json.h"

/* "— ": U+2014 EM DASH in UTF-8, then a space. */
static const char sig_prefix[] = "\xe2\x80\x94 ";
#define SIG_PREFIX_LEN 4

/* Bytes of one Ed25519 signature line's decoded base64: key hash and
 * signature. */
#define ED25519_SIG_BYTES (4 + 64)

/* The code point of the valid UTF-8 sequence at s (n bytes left) into *cp;
 * returns its length. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len = s[0] < 0x80 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
    if (len > n)
        len = n; /* cannot happen in valid UTF-8 */
    uint32_t v = len == 1 ? s[0] : len == 2 ? s[0] & 0x1fu : len == 3 ? s[0] & 0x0fu : s[0] & 7u;
    for (size_t i = 1; i < len; i++)
        v = v << 6 | (s[i] & 0x3fu);
    *cp = v;
    return len;
}

/* Unicode White_Space, what Go's unicode.IsSpace reports. */
static int is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* NULL when name[0..n) is a valid key name, else what is wrong with it:
 * non-empty, valid UTF-8, no Unicode space, no '+' (the spec and Go's
 * isValidName), and no control character (a note holds none). A name we
 * sign under must be printable too (no DEL); a name read from a note need
 * not, as for Go, so that no note Go takes is refused here for it. */
static const char *name_problem(const char *name, size_t n, int signing)
{
    if (n == 0)
        return "the key name is empty";
    if (!oe_utf8_valid(name, n))
        return "the key name is not valid UTF-8";
    const unsigned char *p = (const unsigned char *)name;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += utf8_decode(p + i, n - i, &c);
        if (is_space(c))
            return "the key name holds a space";
        if (c < 0x20 || (c == 0x7f && signing))
            return "the key name holds a control character";
        if (c == '+')
            return "the key name holds a '+'";
    }
    return NULL;
}

/* NULL when s[0..n) is valid UTF-8 without control characters other than
 * "\n", else what is wrong, with the line (from 1) into *line. */
static const char *text_problem(const char *s, size_t n, size_t *line)
{
    *line = 1;
    for (size_t start = 0; start < n; (*line)++) {
        const char *nl = memchr(s + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - s) : n;
        if (!oe_utf8_valid(s + start, end - start))
            return "is not valid UTF-8";
        for (size_t i = start; i < end; i++)
            if ((unsigned char)s[i] < 0x20)
                return "holds a control character";
        start = end + 1;
    }
    return NULL;
}

static uint32_t key_hash(const char *name, size_t n, const unsigned char pub[32])
{
    static const unsigned char sep[2] = {'\n', OE_NOTE_ED25519};
    const void *parts[3] = {name, sep, pub};
    size_t lens[3] = {n, sizeof sep, 32};
    unsigned char md[32];
    oe_sha256_parts(parts, lens, 3, md);
    return (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3];
}

uint32_t oe_note_key_hash(const char *name, const unsigned char pub[32])
{
    return key_hash(name, strlen(name), pub);
}

oe_rc oe_note_vkey(const char *name, const unsigned char pub[32], oe_buf *out)
{
    if (name_problem(name, strlen(name), 1))
        return OE_EINVAL;
    unsigned char key[33];
    char b64[48];
    key[0] = OE_NOTE_ED25519;
    memcpy(key + 1, pub, 32);
    oe_base64_encode(key, sizeof key, b64, sizeof b64);
    return oe_buf_printf(out, "%s+%08x+%s", name, (unsigned)oe_note_key_hash(name, pub), b64);
}

oe_rc oe_note_sign(const oe_signer *signer, const char *name, const char *text, size_t len,
                   oe_buf *out, char *err, size_t errlen)
{
    size_t nlen = strlen(name), line;
    const char *problem = name_problem(name, nlen, 1);
    if (problem) {
        snprintf(err, errlen, "cannot sign a note: %s", problem);
        return OE_EINVAL;
    }
    if (len == 0 || text[len - 1] != '\n') {
        snprintf(err, errlen, "cannot sign a note: its text %s",
                 len == 0 ? "is empty" : "does not end with a newline");
        return OE_EINVAL;
    }
    if ((problem = text_problem(text, len, &line))) {
        snprintf(err, errlen, "cannot sign a note: line %zu of its text %s", line, problem);
        return OE_EINVAL;
    }
    /* text "\n" "— " name " " base64(68 bytes) "\n" */
    size_t b64len = 4 * ((ED25519_SIG_BYTES + 2) / 3);
    if (len > OE_NOTE_MAX || nlen > OE_NOTE_MAX ||
        len + nlen + b64len + SIG_PREFIX_LEN + 3 > OE_NOTE_MAX) {
        snprintf(err, errlen, "cannot sign a note: it would be larger than %zu bytes", OE_NOTE_MAX);
        return OE_EINVAL;
    }
    unsigned char sig[ED25519_SIG_BYTES];
    char b64[4 * ((ED25519_SIG_BYTES + 2) / 3) + 1];
    unsigned char pub[32];
    oe_signer_public(signer, pub);
    uint32_t hash = key_hash(name, nlen, pub);
    sig[0] = (unsigned char)(hash >> 24);
    sig[1] = (unsigned char)(hash >> 16);
    sig[2] = (unsigned char)(hash >> 8);
    sig[3] = (unsigned char)hash;
    if (oe_signer_sign(signer, text, len, sig + 4) != OE_OK) {
        snprintf(err, errlen, "cannot sign a note: Ed25519 signing failed (out of memory)");
        return OE_ENOMEM;
    }
    oe_base64_encode(sig, sizeof sig, b64, sizeof b64);
    oe_buf_append(out, text, len);
    oe_buf_putc(out, '\n');
    oe_buf_append(out, sig_prefix, SIG_PREFIX_LEN);
    oe_buf_append(out, name, nlen);
    oe_buf_putc(out, ' ');
    oe_buf_puts(out, b64);
    oe_rc rc = oe_buf_putc(out, '\n');
    if (rc != OE_OK)
        snprintf(err, errlen, "cannot sign a note: %s", oe_strerror(rc));
    return rc;
}

/* Checks that s[0..n) is standard base64 with padding (Go's
 * base64.StdEncoding) and decodes its first bytes, at most cap, into head;
 * the whole decoded length into *total. Returns 0, or -1 when s is not
 * base64. Nothing is allocated, whatever the length of s. */
static int base64_head(const char *s, size_t n, unsigned char *head, size_t cap, size_t *total)
{
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned char group[3];
        /* oe_base64_decode takes padding at the end of what it is given:
         * only the last group may hold any. */
        if (i + 4 < n && memchr(s + i, '=', 4))
            return -1;
        int k = oe_base64_decode(s + i, 4, group, sizeof group);
        if (k < 0)
            return -1;
        for (int j = 0; j < k; j++, o++)
            if (o < cap)
                head[o] = group[j];
    }
    *total = o;
    return 0;
}

/* The length of the name for messages: at most 64 bytes, cut at a
 * character boundary. */
static int shown_len(const char *name, size_t n)
{
    if (n <= 64)
        return (int)n;
    n = 64;
    while (n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80)
        n--;
    return (int)n;
}

/* One parsed signature line. */
typedef struct sig_line {
    const char *name; /* into the note */
    size_t name_len;
    uint32_t hash;                        /* KEYHASH */
    unsigned char raw[ED25519_SIG_BYTES]; /* the first bytes of the decoded base64 */
    size_t raw_len;                       /* the whole decoded length */
} sig_line;

/* Parses line[0..n) (without its newline), signature line number no. */
static oe_rc parse_sig_line(const char *line, size_t n, size_t no, sig_line *s, char *err,
                            size_t errlen)
{
    if (n < SIG_PREFIX_LEN || memcmp(line, sig_prefix, SIG_PREFIX_LEN) != 0) {
        snprintf(err, errlen,
                 "malformed signature line %zu: it does not begin with an em dash (U+2014) and a "
                 "space",
                 no);
        return OE_EINVAL;
    }
    line += SIG_PREFIX_LEN;
    n -= SIG_PREFIX_LEN;
    const char *space = memchr(line, ' ', n);
    if (!space) {
        snprintf(err, errlen, "malformed signature line %zu: no space after the key name", no);
        return OE_EINVAL;
    }
    s->name = line;
    s->name_len = (size_t)(space - line);
    const char *problem = name_problem(s->name, s->name_len, 0);
    if (problem) {
        snprintf(err, errlen, "malformed signature line %zu: %s", no, problem);
        return OE_EINVAL;
    }
    const char *b64 = space + 1;
    size_t b64_len = n - s->name_len - 1;
    if (base64_head(b64, b64_len, s->raw, sizeof s->raw, &s->raw_len) != 0) {
        snprintf(err, errlen, "malformed signature line %zu: the signature is not base64", no);
        return OE_EINVAL;
    }
    if (s->raw_len < 5) {
        snprintf(err, errlen, "malformed signature line %zu: the signature is %zu bytes long", no,
                 s->raw_len);
        return OE_EINVAL;
    }
    s->hash = (uint32_t)s->raw[0] << 24 | (uint32_t)s->raw[1] << 16 | (uint32_t)s->raw[2] << 8 |
              s->raw[3];
    return OE_OK;
}

/* The trusted key that line s names, into *key: NULL when none does.
 * Returns OE_OK, or OE_EINVAL when distinct trusted keys match (a 32-bit
 * key hash collision under one name: which key signed cannot be told). */
static oe_rc find_key(const sig_line *s, size_t no, const unsigned char (*trusted)[32],
                      size_t ntrusted, const unsigned char **key, char *err, size_t errlen)
{
    *key = NULL;
    for (size_t i = 0; i < ntrusted; i++) {
        if (key_hash(s->name, s->name_len, trusted[i]) != s->hash)
            continue;
        if (*key && memcmp(*key, trusted[i], 32) != 0) {
            snprintf(err, errlen,
                     "signature line %zu: two trusted keys have the key name and hash %.*s+%08x",
                     no, shown_len(s->name, s->name_len), s->name, (unsigned)s->hash);
            return OE_EINVAL;
        }
        *key = trusted[i];
    }
    return OE_OK;
}

oe_rc oe_note_verify(const char *note, size_t len, const unsigned char (*trusted)[32],
                     size_t ntrusted, size_t *text_len, char *err, size_t errlen)
{
    if (!note || (!trusted && ntrusted) || !text_len) {
        snprintf(err, errlen, "invalid argument");
        return OE_EINVAL;
    }
    if (len > OE_NOTE_MAX) {
        snprintf(err, errlen, "the note is %zu bytes long; at most %zu are read", len, OE_NOTE_MAX);
        return OE_EINVAL;
    }
    size_t line;
    const char *problem = text_problem(note, len, &line);
    if (problem) {
        snprintf(err, errlen, "malformed note: line %zu %s", line, problem);
        return OE_EINVAL;
    }
    /* The text ends at the last empty line of the note. */
    size_t split = len;
    for (size_t i = len; i >= 2 && split == len; i--)
        if (note[i - 2] == '\n' && note[i - 1] == '\n')
            split = i - 2;
    if (split == len) {
        snprintf(err, errlen,
                 "malformed note: no blank line separates the text from the signatures");
        return OE_EINVAL;
    }
    size_t text_end = split + 1, pos = split + 2;
    if (pos == len) {
        snprintf(err, errlen, "malformed note: no signature line after the blank line");
        return OE_EINVAL;
    }
    if (note[len - 1] != '\n') {
        snprintf(err, errlen,
                 "malformed note: the last signature line does not end with a "
                 "newline");
        return OE_EINVAL;
    }
    /* Lines checked with a trusted key, by name and hash: a repeat is not
     * checked again (Go's Open drops repeated signatures by one key). */
    sig_line seen[OE_NOTE_MAX_SIGNATURES];
    size_t nseen = 0, no = 0;
    while (pos < len) {
        const char *nl = memchr(note + pos, '\n', len - pos); /* found: note ends in "\n" */
        size_t n = (size_t)(nl - (note + pos));
        sig_line s;
        if (++no > OE_NOTE_MAX_SIGNATURES) {
            snprintf(err, errlen, "malformed note: more than %d signature lines",
                     OE_NOTE_MAX_SIGNATURES);
            return OE_EINVAL;
        }
        oe_rc rc = parse_sig_line(note + pos, n, no, &s, err, errlen);
        pos += n + 1;
        const unsigned char *key;
        if (rc == OE_OK)
            rc = find_key(&s, no, trusted, ntrusted, &key, err, errlen);
        if (rc != OE_OK)
            return rc;
        if (!key)
            continue; /* an unknown key: ignored */
        size_t k = 0;
        while (k < nseen && !(seen[k].hash == s.hash && seen[k].name_len == s.name_len &&
                              memcmp(seen[k].name, s.name, s.name_len) == 0))
            k++;
        if (k < nseen)
            continue;
        seen[nseen++] = s;
        rc = s.raw_len == ED25519_SIG_BYTES ? oe_ed25519_verify(key, note, text_end, s.raw + 4)
                                            : OE_EINVAL;
        if (rc == OE_ENOMEM) {
            snprintf(err, errlen, "out of memory while checking a note signature");
            return rc;
        }
        if (rc != OE_OK) {
            snprintf(err, errlen, "signature line %zu by trusted key %.*s+%08x does not verify", no,
                     shown_len(s.name, s.name_len), s.name, (unsigned)s.hash);
            return OE_EINVAL;
        }
    }
    if (nseen == 0) {
        snprintf(err, errlen,
                 "no signature by a trusted key (%zu signature line%s, %zu trusted "
                 "key%s)",
                 no, no == 1 ? "" : "s", ntrusted, ntrusted == 1 ? "" : "s");
        return OE_EINVAL;
    }
    *text_len = text_end;
    return OE_OK;
}

oe_rc oe_trusted_keys_parse(const char *pem_text, size_t len, unsigned char (**keys)[32], size_t *n,
                            char *err, size_t errlen)
{
    oe_rc rc =
        oe_ed25519_public_keys_from_pem("trusted keys", pem_text, len, 0, keys, n, err, errlen);
    if (rc == OE_OK && *n == 0) {
        snprintf(err, errlen, "trusted keys: no PEM block (expected Ed25519 public keys)");
        rc = OE_EINVAL;
    }
    return rc;
}
