/* Shared by the libFuzzer harnesses in tests/fuzz/: the entry points
 * libFuzzer calls, and a check that turns a broken property into a crash.
 *
 * A harness does two things with every input: it feeds the input to a
 * decoder (ASan, UBSan and LeakSanitizer catch memory errors, undefined
 * behaviour and leaks), and it checks properties the decoder promises, such
 * as "what it accepts, it re-encodes to something it accepts again, with the
 * same meaning". A property that does not hold is reported with FUZZ_CHECK,
 * which aborts, so libFuzzer saves the input like any other crash.
 */
#ifndef OE_FUZZ_H
#define OE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/request.h"
#include "engine/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The decoders in the shape the harnesses use: a document or NULL, a
 * verdict or -1. Running out of memory is no verdict (status.h); under the
 * fuzzer's memory limit it is a finding, so it aborts. */
static inline oe_json_doc *fuzz_json_parse(const char *buf, size_t len, int max_depth, char *err,
                                           size_t errlen)
{
    oe_json_doc *doc;
    if (oe_json_parse(buf, len, max_depth, &doc, err, errlen) == OE_ENOMEM)
        abort();
    return doc;
}

static inline oe_error_code fuzz_request_from_json(const char *buf, size_t len, oe_request *r,
                                                   char *err, size_t errlen)
{
    oe_error_code verdict;
    if (oe_request_from_json(buf, len, r, &verdict, err, errlen) != OE_OK)
        abort();
    return verdict;
}

static inline oe_error_code fuzz_request_from_fields(const char *action, const char *nonce,
                                                     const char *payload, size_t payload_len,
                                                     const oe_artifact *artifact, oe_request *r,
                                                     char *err, size_t errlen)
{
    oe_error_code verdict;
    if (oe_request_from_fields(action, nonce, payload, payload_len, artifact, r, &verdict, err,
                               errlen) != OE_OK)
        abort();
    return verdict;
}

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
