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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

#endif
