/* Fuzzes the Avro Parsing Canonical Form and its fingerprint
 * (worker/avro_canonical.c) over arbitrary schema JSON text.
 *
 * The fingerprint in every single-object message is computed from this
 * form, so besides memory safety the form must be stable: the canonical
 * form of a canonical form must be accepted, and from then on nothing may
 * change. (One pass may still change: the specification's form writes a
 * type of the null namespace nested in a namespaced one by its bare name,
 * which a second pass reads as inheriting the enclosing namespace.) The
 * form is also JSON that our strict parser accepts.
 */
#include <string.h>

#include "codec/avro_canonical.h"
#include "codec/codec.h"
#include "engine/json.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    oe_buf c1, c2, c3;
    oe_buf_init(&c1, 0);
    oe_buf_init(&c2, 0);
    oe_buf_init(&c3, 0);
    char err[200];
    err[0] = '\0';
    int rc = oe_avro_canonical_form(in, size, &c1, err, sizeof err);
    free(in);
    if (rc != 0) {
        /* A refusal says why and writes nothing. */
        FUZZ_CHECK((rc == OE_EINVAL || rc == OE_ELIMIT || rc == OE_ENOMEM) && err[0] != '\0' &&
                   c1.len == 0);
        goto done;
    }
    FUZZ_CHECK(c1.data && c1.len > 0);
    (void)oe_avro_crc64(c1.data, c1.len);
    oe_json_doc *doc = fuzz_json_parse(c1.data, c1.len, 0, err, sizeof err);
    FUZZ_CHECK(doc != NULL);
    oe_json_doc_free(doc);

    if (oe_avro_canonical_form(c1.data, c1.len, &c2, err, sizeof err) != 0)
        goto done;
    rc = oe_avro_canonical_form(c2.data, c2.len, &c3, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "canonical form refused on the third pass: %s\n", err);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(c3.len == c2.len && memcmp(c3.data, c2.data, c2.len) == 0);
done:
    oe_buf_free(&c1);
    oe_buf_free(&c2);
    oe_buf_free(&c3);
    return 0;
}
