/* Tests engine/signer.c, engine/note.c, engine/checkpoint.c and
 * engine/ed25519.c: the known answers of Go's signed-note library, then
 * key files, verification refusals, checkpoints and trusted keys. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "engine/approval.h"
#include "engine/checkpoint.h"
#include "engine/digest.h"
#include "engine/ed25519.h"
#include "engine/merkle.h"
#include "engine/note.h"
#include "engine/signer.h"
#include "engine/status.h"
#include "tests/test.h"

/* Known answers from golang.org/x/mod, sumdb/note/note_test.go (TestSign,
 * TestNewVerifier, TestOpen): a fixed Ed25519 key "PeterNeumann" given as
 * Go's signer key (base64 of 0x01 || the 32-byte seed), its verifier key,
 * a second verifier key "EnochRoot" without its private key, and a text
 * signed by both. */
static const char go_skey[] =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
static const char go_peter_vkey[] =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char go_enoch_vkey[] =
    "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
static const char go_text[] = "If you think cryptography is the answer to your problem,\n"
                              "then you don't know what your problem is.\n";
static const char go_peter_sig[] =
    "\xe2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
static const char go_enoch_sig[] = "\xe2\x80\x94 EnochRoot "
                                   "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/"
                                   "5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

/* The same Peter key as computed independently (Python's cryptography
 * and hashlib): its raw public key, key id and PEM public key. */
static const char peter_pub_hex[] =
    "1a5cd907143c384c41e830c5bce12aa8817ec5649aaabf2c31388b35b2d744d6";
static const char peter_key_id[] =
    "c7a9d541f116ae828b693ee8c89482bbe3ec786faa1df159677bd65150394f0f";
static const char peter_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                    "MCowBQYDK2VwAyEAGlzZBxQ8OExB6DDFvOEqqIF+xWSaqr8sMTiLNbLXRNY=\n"
                                    "-----END PUBLIC KEY-----\n";

/* Public keys of other types, made with Python's cryptography. */
static const char rsa_pub_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCr6k25Q0X/Mji/49REOZRYtwhX\n"
    "8om2wwV1SP5BYacOyJtOlZKdEZdEXtZmFbNjUeUwiqs/xPR1gEATgwjEqnIkOJRn\n"
    "XejDxPgWI9CEkDZrsxpP8IaPlXsg87r8YDtLTEjaOrHQbDivq/WKHmirJ+nMAH/h\n"
    "bCY7cNPNyeyOFzVTMwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";
static const char ec_pub_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEkCZOSDcNELim0gLi+E+uAZuph5mr\n"
    "RGaRBK/oJKrni06zSWMLnFQKxPFLNS2cngS4ZyyWhFO2D/L/jCzqk75R1A==\n"
    "-----END PUBLIC KEY-----\n";

/* The 32-byte key at the end of a Go key string ("[PRIVATE+KEY+]NAME+
 * HASH+base64(0x01 || key)"; the base64 may hold '+' too): the seed of a
 * signer key, the public key of a verifier key. */
static void go_key_bytes(const char *key, unsigned char out[32])
{
    const char *b64 = key + (strncmp(key, "PRIVATE+KEY+", 12) == 0 ? 12 : 0);
    b64 = strchr(b64, '+') + 1;
    b64 = strchr(b64, '+') + 1;
    unsigned char raw[40];
    int n = oe_base64_decode(b64, strlen(b64), raw, sizeof raw);
    ASSERT_EQ(n, 33);
    ASSERT_EQ(raw[0], OE_NOTE_ED25519);
    memcpy(out, raw + 1, 32);
}

static oe_signer *peter_signer(void)
{
    unsigned char seed[32];
    char err[256];
    oe_signer *s = NULL;
    go_key_bytes(go_skey, seed);
    ASSERT_EQ(oe_signer_from_seed(seed, &s, err, sizeof err), OE_OK);
    return s;
}

/* Verifies the NUL-terminated note; *text_len is set to 0 first. */
static int verify(const char *note, const unsigned char (*keys)[32], size_t n, size_t *text_len,
                  char *err, size_t errlen)
{
    *text_len = 0;
    err[0] = '\0';
    return oe_note_verify(note, strlen(note), keys, n, text_len, err, errlen);
}

/* A string of a and b concatenated, into buf. */
static const char *cat(char *buf, size_t cap, const char *a, const char *b)
{
    snprintf(buf, cap, "%s%s", a, b);
    return buf;
}

static void test_go_keys(void)
{
    unsigned char peter[32], enoch[32], expect[32];
    go_key_bytes(go_peter_vkey, peter);
    go_key_bytes(go_enoch_vkey, enoch);
    test_unhex(peter_pub_hex, expect);
    ASSERT_TRUE(memcmp(peter, expect, 32) == 0);
    ASSERT_EQ(oe_note_key_hash("PeterNeumann", peter), 0xc74f20a3);
    ASSERT_EQ(oe_note_key_hash("EnochRoot", enoch), 0xaf0cfe78);
    /* The hash depends on the name. */
    ASSERT_TRUE(oe_note_key_hash("PeterNeuman", peter) != 0xc74f20a3);

    /* The signer made from Go's seed has Go's public key. */
    oe_signer *s = peter_signer();
    unsigned char pub[32];
    char id[65];
    oe_signer_public(s, pub);
    oe_signer_key_id(s, id);
    ASSERT_TRUE(memcmp(pub, peter, 32) == 0);
    ASSERT_STREQ(id, peter_key_id);
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_signer_public_pem(s, &b), OE_OK);
    ASSERT_STREQ(b.data, peter_pub_pem);
    oe_signer_free(s);

    /* Verifier keys, as Go's NewEd25519VerifierKey writes them. */
    oe_buf_reset(&b);
    ASSERT_EQ(oe_note_vkey("PeterNeumann", peter, &b), OE_OK);
    ASSERT_STREQ(b.data, go_peter_vkey);
    oe_buf_reset(&b);
    ASSERT_EQ(oe_note_vkey("EnochRoot", enoch, &b), OE_OK);
    ASSERT_STREQ(b.data, go_enoch_vkey);
    /* Bad names: refused, nothing appended. */
    const char *bad[] = {"",
                         "a+b",
                         "a b",
                         "a\tb",
                         "a\xc2\xa0"
                         "b",
                         "a\xe3\x80\x80"
                         "b",
                         "a\x01"
                         "b",
                         "a\x7f",
                         "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        oe_buf_reset(&b);
        ASSERT_EQ(oe_note_vkey(bad[i], peter, &b), OE_EINVAL);
        ASSERT_EQ(b.len, 0);
    }
    /* A name that is not ASCII is fine. */
    oe_buf_reset(&b);
    ASSERT_EQ(oe_note_vkey("quasimodo.example/salvat\xc3\xb2re", peter, &b), OE_OK);
    oe_buf_free(&b);
}

static void test_go_sign(void)
{
    oe_signer *s = peter_signer();
    char err[256] = "", want[512];
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_note_sign(s, "PeterNeumann", go_text, strlen(go_text), &b, err, sizeof err),
              OE_OK);
    snprintf(want, sizeof want, "%s\n%s", go_text, go_peter_sig);
    ASSERT_STREQ(b.data, want);
    /* Ed25519 is deterministic: the same note again, appended. */
    ASSERT_EQ(oe_note_sign(s, "PeterNeumann", go_text, strlen(go_text), &b, err, sizeof err),
              OE_OK);
    ASSERT_EQ(b.len, 2 * strlen(want));
    ASSERT_TRUE(memcmp(b.data + strlen(want), want, strlen(want)) == 0);

    /* Refused texts and names leave the buffer alone. */
    const struct {
        const char *name, *text, *reason;
    } bad[] = {
        {"PeterNeumann", "abc", "does not end with a newline"},
        {"PeterNeumann", "", "is empty"},
        {"a+b", "abc\n", "holds a '+'"},
        {"bad name", "abc\n", "holds a space"},
        {"", "abc\n", "the key name is empty"},
        {"PeterNeumann", "ok\nbell\a\n", "line 2 of its text holds a control character"},
        {"PeterNeumann", "tab\tx\n", "line 1 of its text holds a control character"},
        {"PeterNeumann", "\xc3\x28\n", "line 1 of its text is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        oe_buf_reset(&b);
        err[0] = '\0';
        ASSERT_EQ(
            oe_note_sign(s, bad[i].name, bad[i].text, strlen(bad[i].text), &b, err, sizeof err),
            OE_EINVAL);
        ASSERT_EQ(b.len, 0);
        ASSERT_CONTAINS(err, bad[i].reason);
    }
    /* A text that would make a note past the limit. */
    size_t big = OE_NOTE_MAX - 50;
    char *text = malloc(big);
    memset(text, 'a', big);
    text[big - 1] = '\n';
    oe_buf_reset(&b);
    ASSERT_EQ(oe_note_sign(s, "PeterNeumann", text, big, &b, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "larger than");
    free(text);
    oe_buf_free(&b);
    oe_signer_free(s);
}

static void test_go_open(void)
{
    unsigned char keys[2][32], other[32];
    go_key_bytes(go_peter_vkey, keys[0]);
    go_key_bytes(go_enoch_vkey, keys[1]);
    memset(other, 7, sizeof other);
    char note[16384], err[300];
    size_t text_len;
    snprintf(note, sizeof note, "%s\n%s%s", go_text, go_peter_sig, go_enoch_sig);

    /* One signature verified (Enoch's is by an unknown key), both, Enoch's
     * alone: each is enough; the signed text is go_text. */
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_OK);
    ASSERT_EQ(text_len, strlen(go_text));
    ASSERT_EQ(verify(note, keys, 2, &text_len, err, sizeof err), OE_OK);
    ASSERT_EQ(text_len, strlen(go_text));
    ASSERT_EQ(verify(note, keys + 1, 1, &text_len, err, sizeof err), OE_OK);
    ASSERT_EQ(text_len, strlen(go_text));
    /* No trusted key, or only another one: rejected. */
    ASSERT_EQ(verify(note, NULL, 0, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no signature by a trusted key");
    ASSERT_EQ(text_len, 0);
    ASSERT_EQ(verify(note, (const unsigned char(*)[32])other, 1, &text_len, err, sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "no signature by a trusted key");

    /* Too many signatures: 100 pass, 101 do not. */
    size_t off = (size_t)snprintf(note, sizeof note, "%s\n", go_text);
    for (int i = 0; i < 100; i++)
        off += (size_t)snprintf(note + off, sizeof note - off, "%s", go_peter_sig);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_OK);
    snprintf(note + off, sizeof note - off, "%s", go_peter_sig);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "more than 100 signature lines");
    ASSERT_EQ(verify(note, NULL, 0, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "more than 100 signature lines");

    /* An invalid signature by a trusted key rejects the note. */
    char sig[256];
    snprintf(sig, sizeof sig, "%.60sABCD%s", go_peter_sig, go_peter_sig + 60);
    snprintf(note, sizeof note, "%s\n%s", go_text, sig);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "signature line 1 by trusted key PeterNeumann+c74f20a3 does not verify");
    /* ... but not when the key is not trusted. */
    snprintf(note, sizeof note, "%s\n%s%s", go_text, go_peter_sig, sig);
    ASSERT_EQ(verify(note, keys + 1, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no signature by a trusted key");

    /* Repeated lines: a repeat of a key's line is not checked again, and
     * lines by unknown keys are ignored however bad their signature. */
    char enoch_bad[256];
    snprintf(enoch_bad, sizeof enoch_bad, "%.60sABCD%s", go_enoch_sig, go_enoch_sig + 60);
    snprintf(note, sizeof note, "%s\n%s%s%s%s%s", go_text, go_peter_sig, go_peter_sig, go_enoch_sig,
             go_enoch_sig, enoch_bad);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_OK);
    ASSERT_EQ(text_len, strlen(go_text));

    /* Go's malformed notes. */
    char peter_cut[256];
    snprintf(peter_cut, sizeof peter_cut, "%.*s", (int)strlen(go_peter_sig) - 1, go_peter_sig);
    const char *go_bad[7][3] = {
        {go_text, "", "no blank line separates"},
        {go_text, "\n", "no signature line after the blank line"},
        {go_text, "\n", "does not end with a newline"}, /* + peter_cut */
        {"\x01", "", "line 1 holds a control character"},
        {"\xff", "", "line 1 is not valid UTF-8"},
        {go_text,
         "\n\xe2\x80\x94 Bad Name "
         "x08go/ZJkuBS9UG/"
         "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
         "does not end with a newline"},
        {go_text, "\n", "malformed signature line 2: it does not begin with an em dash"},
    };
    for (int i = 0; i < 7; i++) {
        if (i == 2)
            snprintf(note, sizeof note, "%s\n%s", go_text, peter_cut);
        else if (i == 3 || i == 4)
            snprintf(note, sizeof note, "%s%s\n%s", go_bad[i][0], go_text, go_peter_sig);
        else if (i == 6)
            snprintf(note, sizeof note, "%s\n%sUnexpected line.\n", go_text, go_peter_sig);
        else
            cat(note, sizeof note, go_bad[i][0], go_bad[i][1]);
        ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
        ASSERT_CONTAINS(err, go_bad[i][2]);
        ASSERT_EQ(text_len, 0);
    }

    /* Another name, or another key hash, for Peter's signature: the line
     * is by an unknown key, so nothing trusted signed. */
    snprintf(note, sizeof note,
             "%s\n\xe2\x80\x94 CarmenSandiego "
             "x08go/ZJkuBS9UG/"
             "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
             go_text);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no signature by a trusted key");
    snprintf(note, sizeof note,
             "%s\n\xe2\x80\x94 PeterNeumann "
             "xxxxo/ZJkuBS9UG/"
             "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
             go_text);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no signature by a trusted key");
}

/* Changes one byte of a valid note at a time and checks the verdict. */
static void test_verify_refusals(void)
{
    unsigned char keys[2][32];
    go_key_bytes(go_peter_vkey, keys[0]);
    go_key_bytes(go_enoch_vkey, keys[1]);
    char good[1024], note[1024], err[300];
    size_t text_len, len = (size_t)snprintf(good, sizeof good, "%s\n%s", go_text, go_peter_sig);

    /* A changed byte of the text: letters only, so that it stays UTF-8. */
    for (size_t i = 0; i < strlen(go_text); i++) {
        if (go_text[i] < 'a' || go_text[i] > 'z')
            continue;
        memcpy(note, good, len + 1);
        note[i] = note[i] == 'a' ? 'b' : 'a';
        ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
        ASSERT_CONTAINS(err, "does not verify");
    }
    /* A changed character of the signature (past the key hash, which the
     * first 6 characters hold): it no longer verifies. The last
     * characters before "=" carry the final bits. */
    const char *b64 = strstr(good, "x08go");
    size_t start = (size_t)(b64 - good) + 8, end = len - 2;
    for (size_t i = start; i < end; i++) {
        memcpy(note, good, len + 1);
        note[i] = note[i] == 'A' ? 'B' : 'A';
        ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
        ASSERT_CONTAINS(err, "signature line 1 by trusted key PeterNeumann+c74f20a3");
    }
    /* A changed key hash: another key's line, ignored. */
    memcpy(note, good, len + 1);
    note[b64 - good] = 'y';
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no signature by a trusted key");

    const struct {
        const char *sigs, *reason;
    } bad[] = {
        {"\xe2\x80\x94 PeterNeumann !!!!\n", "malformed signature line 2: the signature is not "
                                             "base64"},
        {"\xe2\x80\x94 PeterNeumann AAA\n", "the signature is not base64"},      /* no padding */
        {"\xe2\x80\x94 PeterNeumann AA==AAAA\n", "the signature is not base64"}, /* = inside */
        {"\xe2\x80\x94 PeterNeumann AAAA\n", "the signature is 3 bytes long"},
        {"\xe2\x80\x94 PeterNeumann \n", "the signature is not base64"},
        {"\xe2\x80\x94 PeterNeumann\n", "no space after the key name"},
        {"\xe2\x80\x94  AAAAAAAA\n", "the key name is empty"},
        {"\xe2\x80\x94 Peter+Neumann AAAAAAAA\n", "holds a '+'"},
        {"\xe2\x80\x94 Peter\xc2\xa0Neumann AAAAAAAA\n", "holds a space"},
        {"- PeterNeumann AAAAAAAA\n", "does not begin with an em dash"},
        {"\xe2\x80\x94PeterNeumann AAAAAAAA\n", "does not begin with an em dash"},
        {"\xe2\x80\x94 PeterNeumann AAAAAAAA\n\n", "no signature line after the blank line"},
        {"\xe2\x80\x94 PeterNeumann AAAAAAAA \n", "not base64"},
        {"\xe2\x80\x94 PeterNeumann AAAAAAAA\r\n", "control character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(note, sizeof note, "%s\n%s%s", go_text, go_peter_sig, bad[i].sigs);
        ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
        if (!strstr(err, bad[i].reason))
            fprintf(stderr, "    case %zu\n", i);
        ASSERT_CONTAINS(err, bad[i].reason);
    }
    /* A line by an unknown key whose name holds a DEL: not printable, so
     * never signed here, but well-formed for the spec and Go: ignored. */
    snprintf(note, sizeof note,
             "%s\n%s\xe2\x80\x94 a\x7f"
             "b AAAAAAAA\n",
             go_text, go_peter_sig);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_OK);
    ASSERT_EQ(text_len, strlen(go_text));
    /* Alone, a line of the trusted key's name and hash whose signature
     * is too short does not verify. (After the good line above it would
     * be a repeat of that key's line, not checked again, as in Go.) */
    snprintf(note, sizeof note, "%s\n\xe2\x80\x94 PeterNeumann x08go/ZJ\n", go_text);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "signature line 1 by trusted key PeterNeumann+c74f20a3 does not verify");

    /* A missing final newline of the text: no blank line any more. */
    snprintf(note, sizeof note, "%.*s\n%s", (int)strlen(go_text) - 1, go_text, go_peter_sig);
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no blank line");
    /* A missing final newline of the note. */
    memcpy(note, good, len + 1);
    note[len - 1] = '\0';
    ASSERT_EQ(verify(note, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "does not end with a newline");
    /* A NUL byte inside the note is a control character too. */
    memcpy(note, good, len + 1);
    note[3] = '\0';
    text_len = 0;
    ASSERT_EQ(oe_note_verify(note, len, keys, 1, &text_len, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "line 1 holds a control character");
    /* Past the size limit, whatever it holds. */
    char *huge = malloc(OE_NOTE_MAX + 1);
    memset(huge, 'a', OE_NOTE_MAX + 1);
    ASSERT_EQ(oe_note_verify(huge, OE_NOTE_MAX + 1, keys, 1, &text_len, err, sizeof err),
              OE_EINVAL);
    ASSERT_CONTAINS(err, "at most 1048576");
    free(huge);
    /* The good note still passes: the cases above changed copies. */
    ASSERT_EQ(verify(good, keys, 1, &text_len, err, sizeof err), OE_OK);
}

static void test_sign_verify_round_trip(void)
{
    oe_signer *peter = peter_signer();
    unsigned char pub[32];
    oe_signer_public(peter, pub);
    char err[300];
    size_t text_len;
    oe_buf b;
    oe_buf_init(&b, 0);
    /* Texts with empty lines, ending in one, a lone newline, not ASCII. */
    const char *texts[] = {"a\n\nb\n", "a\n\n", "\n", "salvat\xc3\xb2re \xe2\x80\x94 x\n",
                           "line\n\n\xe2\x80\x94 PeterNeumann AAAAAAAA\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        oe_buf_reset(&b);
        ASSERT_EQ(
            oe_note_sign(peter, "example.com/log", texts[i], strlen(texts[i]), &b, err, sizeof err),
            OE_OK);
        ASSERT_EQ(oe_note_verify(b.data, b.len, (const unsigned char(*)[32])pub, 1, &text_len, err,
                                 sizeof err),
                  OE_OK);
        ASSERT_EQ(text_len, strlen(texts[i]));
        ASSERT_TRUE(memcmp(b.data, texts[i], text_len) == 0);
    }
    /* A note signed by two keys, each trusted alone. */
    char dir[] = "/tmp/oe-note-XXXXXX", path[64];
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/key.pem", dir);
    oe_signer *fresh = NULL;
    ASSERT_EQ(oe_signer_generate_file(path, &fresh, err, sizeof err), OE_OK);
    unsigned char keys[2][32];
    oe_signer_public(peter, keys[0]);
    oe_signer_public(fresh, keys[1]);
    oe_buf_reset(&b);
    ASSERT_EQ(oe_note_sign(fresh, "second", "hello\n", 6, &b, err, sizeof err), OE_OK);
    /* A second signature line, after the first one. */
    oe_buf two;
    oe_buf_init(&two, 0);
    ASSERT_EQ(oe_note_sign(peter, "PeterNeumann", "hello\n", 6, &two, err, sizeof err), OE_OK);
    oe_buf_append(&b, two.data + 7, two.len - 7);
    for (size_t i = 0; i < 2; i++) {
        ASSERT_EQ(oe_note_verify(b.data, b.len, keys + i, 1, &text_len, err, sizeof err), OE_OK);
        ASSERT_EQ(text_len, 6);
    }
    oe_buf_free(&two);
    oe_buf_free(&b);
    oe_signer_free(fresh);
    oe_signer_free(peter);
    unlink(path);
    rmdir(dir);
}

/* Signing from several threads at once gives the single-thread results. */
typedef struct sign_job {
    const oe_signer *signer;
    unsigned char sigs[64][64];
    int failed;
} sign_job;

static void *sign_many(void *arg)
{
    sign_job *job = arg;
    for (int i = 0; i < 64; i++) {
        unsigned char msg[8] = {(unsigned char)i, 1, 2, 3, 4, 5, 6, 7};
        if (oe_signer_sign(job->signer, msg, sizeof msg, job->sigs[i]) != OE_OK)
            job->failed++;
    }
    return NULL;
}

static void test_sign_threads(void)
{
    oe_signer *s = peter_signer();
    sign_job jobs[5];
    for (int t = 0; t < 5; t++)
        jobs[t] = (sign_job){.signer = s};
    sign_many(&jobs[0]);
    pthread_t th[4];
    for (int t = 0; t < 4; t++)
        ASSERT_EQ(pthread_create(&th[t], NULL, sign_many, &jobs[t + 1]), 0);
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    unsigned char pub[32];
    oe_signer_public(s, pub);
    for (int t = 0; t < 5; t++) {
        ASSERT_EQ(jobs[t].failed, 0);
        ASSERT_TRUE(memcmp(jobs[t].sigs, jobs[0].sigs, sizeof jobs[0].sigs) == 0);
    }
    unsigned char msg[8] = {5, 1, 2, 3, 4, 5, 6, 7};
    ASSERT_EQ(oe_ed25519_verify(pub, msg, sizeof msg, jobs[3].sigs[5]), OE_OK);
    ASSERT_EQ(oe_ed25519_verify(pub, msg, sizeof msg, jobs[3].sigs[6]), OE_EINVAL);
    /* The empty message signs too. */
    unsigned char sig[64];
    ASSERT_EQ(oe_signer_sign(s, NULL, 0, sig), OE_OK);
    ASSERT_EQ(oe_ed25519_verify(pub, "", 0, sig), OE_OK);
    oe_signer_free(s);
}

/* Writes text to path with mode (the mode set after the write). */
static void write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    if (!f)
        return;
    fwrite(text, 1, len, f);
    fclose(f);
    chmod(path, mode);
}

static char *pem_of(EVP_PKEY *key, int private_key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (private_key)
        PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    else
        PEM_write_bio_PUBKEY(bio, key);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(bio);
    return s;
}

static void test_key_files(void)
{
    char dir[] = "/tmp/oe-note-XXXXXX", path[128], other[128], err[512];
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/log.key", dir);
    oe_signer *made = NULL, *loaded = NULL;

    /* Generate: a 0600 PKCS#8 file that loads back as the same key. */
    ASSERT_EQ(oe_signer_generate_file(path, &made, err, sizeof err), OE_OK);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    char before[512] = "";
    size_t n = f ? fread(before, 1, sizeof before - 1, f) : 0;
    if (f)
        fclose(f);
    ASSERT_TRUE(n > 0 && strncmp(before, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    ASSERT_EQ(oe_signer_load_file(path, &loaded, err, sizeof err), OE_OK);
    char id1[65], id2[65];
    oe_signer_key_id(made, id1);
    oe_signer_key_id(loaded, id2);
    ASSERT_STREQ(id1, id2);
    unsigned char sig1[64], sig2[64];
    oe_signer_sign(made, "m", 1, sig1);
    oe_signer_sign(loaded, "m", 1, sig2);
    ASSERT_TRUE(memcmp(sig1, sig2, 64) == 0);

    /* The key id is the one approval keys give the same public key. */
    oe_buf pem;
    oe_buf_init(&pem, 0);
    ASSERT_EQ(oe_signer_public_pem(made, &pem), OE_OK);
    oe_approval_keys *ak = NULL;
    ASSERT_EQ(oe_approval_keys_new(NULL, pem.data, &ak, err, sizeof err), OE_OK);
    ASSERT_STREQ(oe_approval_keys_ed25519_id(ak, 0), id1);
    oe_approval_keys_free(ak);
    oe_buf_free(&pem);

    /* Generate never overwrites: the file stays as it was. */
    oe_signer *again = (oe_signer *)1;
    err[0] = '\0';
    ASSERT_EQ(oe_signer_generate_file(path, &again, err, sizeof err), OE_EIO);
    ASSERT_TRUE(again == NULL);
    ASSERT_CONTAINS(err, path);
    ASSERT_CONTAINS(err, "already exists");
    f = fopen(path, "r");
    char after[512] = "";
    if (f) {
        n = fread(after, 1, sizeof after - 1, f);
        fclose(f);
    }
    ASSERT_STREQ(after, before);
    /* Nor into a directory that does not exist. */
    snprintf(other, sizeof other, "%s/none/log.key", dir);
    ASSERT_EQ(oe_signer_generate_file(other, &again, err, sizeof err), OE_EIO);
    ASSERT_CONTAINS(err, "No such file or directory");

    /* Modes: open to group or others is refused, naming the file. */
    const struct {
        mode_t mode;
        const char *reason;
    } modes[] = {
        {0644, "is readable by others (mode 0644); chmod 600 it"},
        {0640, "is readable by others (mode 0640)"},
        {0604, "is readable by others (mode 0604)"},
        {0620, "is writable by others (mode 0620)"},
        {0610, "is executable by others (mode 0610)"},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        chmod(path, modes[i].mode);
        oe_signer *s = (oe_signer *)1;
        err[0] = '\0';
        ASSERT_EQ(oe_signer_load_file(path, &s, err, sizeof err), OE_EINVAL);
        ASSERT_TRUE(s == NULL);
        ASSERT_CONTAINS(err, path);
        ASSERT_CONTAINS(err, modes[i].reason);
    }
    /* 0600 and 0400 are fine. */
    chmod(path, 0400);
    oe_signer *ro = NULL;
    ASSERT_EQ(oe_signer_load_file(path, &ro, err, sizeof err), OE_OK);
    oe_signer_free(ro);
    chmod(path, 0600);

    /* Missing files, directories, big files, files without a key. */
    oe_signer *s = (oe_signer *)1;
    snprintf(other, sizeof other, "%s/missing.key", dir);
    ASSERT_EQ(oe_signer_load_file(other, &s, err, sizeof err), OE_EIO);
    ASSERT_TRUE(s == NULL);
    ASSERT_CONTAINS(err, other);
    ASSERT_CONTAINS(err, "No such file or directory");
    ASSERT_EQ(oe_signer_load_file(dir, &s, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "not a regular file");

    snprintf(other, sizeof other, "%s/other.key", dir);
    char *big = malloc(OE_SIGNER_FILE_MAX + 1);
    memset(big, '\n', OE_SIGNER_FILE_MAX + 1);
    write_file(other, big, OE_SIGNER_FILE_MAX + 1, 0600);
    ASSERT_EQ(oe_signer_load_file(other, &s, err, sizeof err), OE_ELIMIT);
    ASSERT_CONTAINS(err, "larger than 64 KiB");
    /* Exactly the limit is read (and holds no key). */
    write_file(other, big, OE_SIGNER_FILE_MAX, 0600);
    ASSERT_EQ(oe_signer_load_file(other, &s, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "holds no PEM block");
    free(big);

    write_file(other, peter_pub_pem, strlen(peter_pub_pem), 0600);
    ASSERT_EQ(oe_signer_load_file(other, &s, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "is not an Ed25519 private key");
    ASSERT_CONTAINS(err, "PUBLIC KEY");

    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char *ec_pem = pem_of(ec, 1);
    write_file(other, ec_pem, strlen(ec_pem), 0600);
    ASSERT_EQ(oe_signer_load_file(other, &s, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "is not an Ed25519 private key (it is EC)");
    free(ec_pem);
    EVP_PKEY_free(ec);

    const char *broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    write_file(other, broken, strlen(broken), 0600);
    ASSERT_EQ(oe_signer_load_file(other, &s, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "is not an Ed25519 private key");

    /* Go's test key as a PEM file: loads as the same key. */
    unsigned char seed[32];
    go_key_bytes(go_skey, seed);
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    char *peter_pem = pem_of(pk, 1);
    write_file(other, peter_pem, strlen(peter_pem), 0600);
    ASSERT_EQ(oe_signer_load_file(other, &s, err, sizeof err), OE_OK);
    char id[65] = "";
    if (s)
        oe_signer_key_id(s, id);
    ASSERT_STREQ(id, peter_key_id);
    oe_signer_free(s);
    free(peter_pem);
    EVP_PKEY_free(pk);

    oe_signer_free(made);
    oe_signer_free(loaded);
    unlink(other);
    unlink(path);
    ASSERT_EQ(rmdir(dir), 0);
}

static void test_trusted_keys(void)
{
    unsigned char(*keys)[32] = NULL;
    size_t n = 99;
    char err[300], text[4096];
    unsigned char peter[32], fresh_raw[32];
    test_unhex(peter_pub_hex, peter);

    EVP_PKEY *fresh = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char *fresh_pem = pem_of(fresh, 0);
    size_t rawlen = 32;
    EVP_PKEY_get_raw_public_key(fresh, fresh_raw, &rawlen);

    /* Two blocks, with text around them (ignored, as OpenSSL does). */
    snprintf(text, sizeof text, "log key\n%s\nnext\n%s", peter_pub_pem, fresh_pem);
    ASSERT_EQ(oe_trusted_keys_parse(text, strlen(text), &keys, &n, err, sizeof err), OE_OK);
    ASSERT_EQ(n, 2);
    if (n == 2) {
        ASSERT_TRUE(memcmp(keys[0], peter, 32) == 0);
        ASSERT_TRUE(memcmp(keys[1], fresh_raw, 32) == 0);
    }
    free(keys);

    char *priv = pem_of(fresh, 1);
    const struct {
        const char *a, *b, *reason;
        int rc;
    } bad[] = {
        {peter_pub_pem, rsa_pub_pem,
         "trusted keys: PEM block 2 is not an Ed25519 public key (it "
         "is RSA)",
         OE_EINVAL},
        {ec_pub_pem, "", "trusted keys: PEM block 1 is not an Ed25519 public key (it is EC)",
         OE_EINVAL},
        {peter_pub_pem, priv, "PEM block 2 is not an Ed25519 public key (it is a \"PRIVATE KEY\"",
         OE_EINVAL},
        {"garbage, no PEM at all\n", "", "trusted keys holds no PEM block", OE_EINVAL},
        {"", "", "trusted keys: no PEM block", OE_EINVAL},
        {" \n", "", "trusted keys: no PEM block", OE_EINVAL},
        {"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "",
         "trusted keys: PEM block 1 cannot be read", OE_EINVAL},
        {"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "",
         "trusted keys: PEM block 1 is not an Ed25519 public key", OE_EINVAL},
        {peter_pub_pem, peter_pub_pem, "PEM block 2 repeats the key of block 1", OE_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cat(text, sizeof text, bad[i].a, bad[i].b);
        keys = (unsigned char(*)[32])1;
        n = 99;
        err[0] = '\0';
        ASSERT_EQ(oe_trusted_keys_parse(text, strlen(text), &keys, &n, err, sizeof err), bad[i].rc);
        ASSERT_TRUE(keys == NULL);
        ASSERT_EQ(n, 0);
        ASSERT_CONTAINS(err, bad[i].reason);
        /* No key material in the reason. */
        ASSERT_TRUE(strstr(err, "MC4C") == NULL && strstr(err, "MCow") == NULL);
    }
    /* Only len bytes are read: the second block is cut off here. */
    snprintf(text, sizeof text, "%s%s", peter_pub_pem, fresh_pem);
    ASSERT_EQ(oe_trusted_keys_parse(text, strlen(peter_pub_pem), &keys, &n, err, sizeof err),
              OE_OK);
    ASSERT_EQ(n, 1);
    free(keys);

    /* Trusted keys verify the notes of their signers. */
    oe_signer *s = peter_signer();
    oe_buf note;
    oe_buf_init(&note, 0);
    ASSERT_EQ(oe_note_sign(s, "PeterNeumann", go_text, strlen(go_text), &note, err, sizeof err),
              OE_OK);
    snprintf(text, sizeof text, "%s%s", fresh_pem, peter_pub_pem);
    ASSERT_EQ(oe_trusted_keys_parse(text, strlen(text), &keys, &n, err, sizeof err), OE_OK);
    size_t text_len = 0;
    ASSERT_EQ(oe_note_verify(note.data, note.len, keys, n, &text_len, err, sizeof err), OE_OK);
    ASSERT_EQ(text_len, strlen(go_text));
    free(keys);
    oe_buf_free(&note);
    oe_signer_free(s);
    free(priv);
    free(fresh_pem);
    EVP_PKEY_free(fresh);
}

/* The example of c2sp.org/tlog-checkpoint. */
static const char c2sp_checkpoint[] = "example.com/behind-the-sofa\n"
                                      "20852163\n"
                                      "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

static int parse(const char *text, char *origin, size_t cap, uint64_t *size, unsigned char root[32],
                 char *err, size_t errlen)
{
    err[0] = '\0';
    return oe_checkpoint_parse(text, strlen(text), origin, cap, size, root, err, errlen);
}

static void test_checkpoints(void)
{
    char origin[64], err[300], b64[45];
    uint64_t size = 0;
    unsigned char root[32];
    ASSERT_EQ(parse(c2sp_checkpoint, origin, sizeof origin, &size, root, err, sizeof err), OE_OK);
    ASSERT_STREQ(origin, "example.com/behind-the-sofa");
    ASSERT_EQ(size, 20852163);
    oe_base64_encode(root, 32, b64, sizeof b64);
    ASSERT_STREQ(b64, "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_checkpoint_text("example.com/behind-the-sofa", 20852163, root, &b), OE_OK);
    ASSERT_STREQ(b.data, c2sp_checkpoint);

    /* Round trips: the empty tree, the largest size. */
    unsigned char empty[32];
    oe_merkle_root(NULL, 0, empty);
    const uint64_t sizes[] = {0, 1, 10, UINT64_MAX};
    for (size_t i = 0; i < 4; i++) {
        oe_buf_reset(&b);
        ASSERT_EQ(oe_checkpoint_text("o", sizes[i], empty, &b), OE_OK);
        ASSERT_EQ(parse(b.data, origin, sizeof origin, &size, root, err, sizeof err), OE_OK);
        ASSERT_TRUE(size == sizes[i]);
        ASSERT_TRUE(memcmp(root, empty, 32) == 0);
        ASSERT_STREQ(origin, "o");
    }
    oe_buf_reset(&b);
    oe_checkpoint_text("o", 0, empty, &b);
    ASSERT_STREQ(b.data, "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n");
    /* Bad origins are refused and nothing is appended. */
    oe_buf_reset(&b);
    ASSERT_EQ(oe_checkpoint_text("", 1, empty, &b), OE_EINVAL);
    ASSERT_EQ(oe_checkpoint_text("a\nb", 1, empty, &b), OE_EINVAL);
    ASSERT_EQ(oe_checkpoint_text("\xff", 1, empty, &b), OE_EINVAL);
    ASSERT_EQ(b.len, 0);
    oe_buf_free(&b);

    /* Extension lines are accepted and ignored. */
    char text[512];
    cat(text, sizeof text, c2sp_checkpoint, "ext one\next two\n");
    size = 0;
    ASSERT_EQ(parse(text, origin, sizeof origin, &size, root, err, sizeof err), OE_OK);
    ASSERT_EQ(size, 20852163);

    const char *root_b64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    /* Each text is before, the root (when root is 1), after. */
    const struct {
        const char *before, *after;
        int root;
        const char *reason;
    } bad[] = {
        {"o\n012\n", "\n", 1, "line 2: the tree size is written with a leading zero"},
        {"o\n00\n", "\n", 1, "leading zero"},
        {"o\n\n", "\n", 1, "line 2: the tree size is empty"},
        {"o\n-1\n", "\n", 1, "not a decimal number"},
        {"o\n+1\n", "\n", 1, "not a decimal number"},
        {"o\n1a\n", "\n", 1, "not a decimal number"},
        {"o\n 1\n", "\n", 1, "not a decimal number"},
        {"o\n18446744073709551616\n", "\n", 1, "does not fit in 64 bits"},
        {"o\n123456789012345678901\n", "\n", 1, "too long"},
        {"\n1\n", "\n", 1, "line 1: the origin is empty"},
        {"o\x01\n1\n", "\n", 1, "line 1"},
        {"o\n1\n", "\n\n", 1, "line 4: an extension line is empty"},
        {"o\n1\n", "\next\n\n", 1, "line 5: an extension line is empty"},
        {"o\n1\n", "\next", 1, "line 4 does not end with a newline"},
        {"o\n1\n", "", 1, "no line 3 (the root hash)"},
        {"o\n1\n", "", 0, "no line 3 (the root hash)"},
        {"o\n1", "", 0, "no line 2 (the tree size)"},
        {"o", "", 0, "no line 1 (the origin)"},
        {"", "", 0, "no line 1 (the origin)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s%s%s", bad[i].before, bad[i].root ? root_b64 : "",
                 bad[i].after);
        ASSERT_EQ(parse(text, origin, sizeof origin, &size, root, err, sizeof err), OE_EINVAL);
        ASSERT_CONTAINS(err, bad[i].reason);
    }
    /* Roots: short, long, not base64, without padding, not canonical. */
    const char *bad_roots[] = {
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==",  /* 31 bytes */
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2IA",  /* 33 bytes */
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I",   /* no padding */
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx!2I=",  /* not base64 */
        "CsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=",  /* URL alphabet */
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=",  /* unused bits set */
        " CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", /* a space */
        "",
    };
    for (size_t i = 0; i < sizeof bad_roots / sizeof bad_roots[0]; i++) {
        snprintf(text, sizeof text, "o\n1\n%s\n", bad_roots[i]);
        ASSERT_EQ(parse(text, origin, sizeof origin, &size, root, err, sizeof err), OE_EINVAL);
        ASSERT_CONTAINS(err, "line 3: the root hash is not 32 bytes in canonical base64");
    }
    /* The origin must fit, with its NUL. */
    char small[27];
    ASSERT_EQ(parse(c2sp_checkpoint, small, sizeof small, &size, root, err, sizeof err), OE_ELIMIT);
    ASSERT_CONTAINS(err, "the origin is 27 bytes long; at most 26 fit");
    char fits[28];
    ASSERT_EQ(parse(c2sp_checkpoint, fits, sizeof fits, &size, root, err, sizeof err), OE_OK);
    ASSERT_STREQ(fits, "example.com/behind-the-sofa");
}

/* A log's flow: a tree, its checkpoint signed as a note, the note verified
 * with the trusted key, the signed text parsed back. */
static void test_signed_checkpoint(void)
{
    unsigned char leaves[5][32], root[32], got_root[32];
    for (int i = 0; i < 5; i++)
        oe_merkle_leaf_hash(&i, sizeof i, leaves[i]);
    oe_merkle_root(leaves, 5, root);
    oe_signer *s = peter_signer();
    unsigned char pub[32];
    oe_signer_public(s, pub);
    char err[300], origin[64];
    oe_buf text, note;
    oe_buf_init(&text, 0);
    oe_buf_init(&note, 0);
    ASSERT_EQ(oe_checkpoint_text("example.com/receipts", 5, root, &text), OE_OK);
    ASSERT_EQ(oe_note_sign(s, "example.com/receipts", text.data, text.len, &note, err, sizeof err),
              OE_OK);
    size_t text_len = 0;
    uint64_t size = 0;
    ASSERT_EQ(oe_note_verify(note.data, note.len, (const unsigned char(*)[32])pub, 1, &text_len,
                             err, sizeof err),
              OE_OK);
    ASSERT_EQ(text_len, text.len);
    ASSERT_EQ(oe_checkpoint_parse(note.data, text_len, origin, sizeof origin, &size, got_root, err,
                                  sizeof err),
              OE_OK);
    ASSERT_STREQ(origin, "example.com/receipts");
    ASSERT_EQ(size, 5);
    ASSERT_TRUE(memcmp(got_root, root, 32) == 0);
    oe_buf_free(&text);
    oe_buf_free(&note);
    oe_signer_free(s);
}

int main(void)
{
    RUN_TEST(test_go_keys);
    RUN_TEST(test_go_sign);
    RUN_TEST(test_go_open);
    RUN_TEST(test_verify_refusals);
    RUN_TEST(test_sign_verify_round_trip);
    RUN_TEST(test_sign_threads);
    RUN_TEST(test_key_files);
    RUN_TEST(test_trusted_keys);
    RUN_TEST(test_checkpoints);
    RUN_TEST(test_signed_checkpoint);
    return TEST_REPORT();
}
