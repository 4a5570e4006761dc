/* Avro schema fingerprints: Parsing Canonical Form and CRC-64-AVRO, which
 * avro-c does not provide (NOTES.md). The codec uses them to name its two
 * schemas in single-object encoding. */
#ifndef OE_AVRO_CANONICAL_H
#define OE_AVRO_CANONICAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/buf.h"

/* CRC-64-AVRO (the Rabin fingerprint of the Avro specification). */
uint64_t oe_avro_crc64(const void *data, size_t len);

/* Writes the Parsing Canonical Form of an Avro schema given as JSON text
 * into out (Avro specification, "Parsing Canonical Form for Schemas").
 * Returns OE_OK, or with a reason in err (and out left as it was)
 * OE_EINVAL when the text is not an Avro schema (or not JSON), OE_ELIMIT
 * when out's limit is reached, or OE_ENOMEM (status.h). */
int oe_avro_canonical_form(const char *schema_json, size_t len, oe_buf *out, char *err,
                           size_t errlen);

#endif
