/* Fuzzes the signed-note and checkpoint parsers (engine/note.c,
 * engine/checkpoint.c) and the note signer.
 *
 * The first input byte picks what the rest is:
 *   0: a signed note, verified with the key "PeterNeumann" of Go's
 *      golang.org/x/mod/sumdb/note tests (the seeds hold its signed notes);
 *   1: a checkpoint text, parsed;
 *   2: a note text, signed with that key and then verified.
 *
 * Besides memory safety, it checks that every refusal gives a reason; that
 * a note that verifies has a text ending in "\n" before its blank line, a
 * text that the signer takes and whose new note verifies again to the same
 * length; that a parsed checkpoint prints back to its first three lines;
 * and that whatever the signer takes verifies, with the whole text signed.
 */
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/note.h"
#include "engine/signer.h"
#include "tests/fuzz/fuzz.h"

/* Go's test key: the seed of "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK...". */
static const unsigned char seed[32] = {
    0x81, 0x0a, 0x14, 0x02, 0xd5, 0x14, 0x6c, 0x8d, 0x84, 0xf2, 0x44, 0x33, 0x30, 0xf5, 0x40, 0x80,
    0xeb, 0xf9, 0x8e, 0xe1, 0x7d, 0x9c, 0x74, 0xf6, 0x25, 0x2f, 0xc5, 0xd5, 0xc7, 0x28, 0x31, 0x73,
};

static oe_signer *signer;
static unsigned char trusted[1][32];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[200];
    if (oe_signer_from_seed(seed, &signer, err, sizeof err) != OE_OK) {
        fprintf(stderr, "test key: %s\n", err);
        abort();
    }
    oe_signer_public(signer, trusted[0]);
    return 0;
}

static void check_note(const char *note, size_t len)
{
    char err[300] = "";
    size_t text_len = 0;
    oe_rc rc = oe_note_verify(note, len, trusted, 1, &text_len, err, sizeof err);
    if (rc == OE_ENOMEM)
        abort();
    if (rc != OE_OK) {
        FUZZ_CHECK(rc == OE_EINVAL && err[0] != '\0');
        return;
    }
    FUZZ_CHECK(text_len >= 1 && text_len + 1 < len);
    FUZZ_CHECK(note[text_len - 1] == '\n' && note[text_len] == '\n');
    /* The signed text is one the signer takes, and signs verifiably. */
    oe_buf again;
    oe_buf_init(&again, 0);
    rc = oe_note_sign(signer, "PeterNeumann", note, text_len, &again, err, sizeof err);
    FUZZ_CHECK(rc == OE_OK);
    size_t again_len = 0;
    FUZZ_CHECK(oe_note_verify(again.data, again.len, trusted, 1, &again_len, err, sizeof err) ==
               OE_OK);
    FUZZ_CHECK(again_len == text_len && memcmp(again.data, note, text_len) == 0);
    oe_buf_free(&again);
}

static void check_checkpoint(const char *text, size_t len)
{
    char origin[256], err[300] = "";
    uint64_t size;
    unsigned char root[32];
    oe_rc rc = oe_checkpoint_parse(text, len, origin, sizeof origin, &size, root, err, sizeof err);
    if (rc != OE_OK) {
        FUZZ_CHECK((rc == OE_EINVAL || rc == OE_ELIMIT) && err[0] != '\0');
        return;
    }
    oe_buf b;
    oe_buf_init(&b, 0);
    FUZZ_CHECK(oe_checkpoint_text(origin, size, root, &b) == OE_OK);
    FUZZ_CHECK(b.len <= len && memcmp(b.data, text, b.len) == 0);
    oe_buf_free(&b);
}

static void check_sign(const char *text, size_t len)
{
    char err[300] = "";
    oe_buf note;
    oe_buf_init(&note, 0);
    /* The name comes from the text's first bytes up to a space, so that
     * names are fuzzed too; "PeterNeumann" when there is none. */
    const char *space = memchr(text, ' ', len);
    char name[64] = "PeterNeumann";
    if (space && (size_t)(space - text) < sizeof name) {
        memcpy(name, text, (size_t)(space - text));
        name[space - text] = '\0';
        len -= (size_t)(space - text) + 1;
        text = space + 1;
    }
    oe_rc rc = oe_note_sign(signer, name, text, len, &note, err, sizeof err);
    if (rc == OE_ENOMEM)
        abort();
    if (rc != OE_OK) {
        FUZZ_CHECK(rc == OE_EINVAL && err[0] != '\0' && note.len == 0);
    } else {
        size_t text_len = 0;
        FUZZ_CHECK(oe_note_verify(note.data, note.len, trusted, 1, &text_len, err, sizeof err) ==
                   OE_OK);
        FUZZ_CHECK(text_len == len && memcmp(note.data, text, len) == 0);
    }
    oe_buf_free(&note);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0:
        check_note(text, len);
        break;
    case 1:
        check_checkpoint(text, len);
        break;
    default:
        check_sign(text, len);
        break;
    }
    return 0;
}
