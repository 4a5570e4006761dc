/* Strict JSON: one parser for every JSON input, and serializers that are
 * byte-identical to Python's json.dumps.
 *
 * Why our own parser: Jansson drops integers beyond int64 and re-prints
 * floats with %.17g, so it can neither keep a 30-digit integer exactly nor
 * reproduce Python's float repr. The hash that binds an approval to a request
 * (docs/protocol.md §3) must be computed over exactly the text Python would produce, so
 * we keep integers as their decimal text and floats as doubles printed the
 * way Python's repr prints them.
 *
 * Stricter than Python's json.loads on purpose: duplicate keys, invalid
 * UTF-8, lone surrogates, raw control characters in strings, NaN/Infinity
 * and numbers that overflow to infinity are all rejected.
 */
#ifndef OE_JSON_H
#define OE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum oe_json_type {
    OE_JSON_NULL,
    OE_JSON_FALSE,
    OE_JSON_TRUE,
    OE_JSON_INT,   /* integer literal (no '.', no exponent), any size */
    OE_JSON_FLOAT, /* number with '.' or exponent, finite double */
    OE_JSON_STRING,
    OE_JSON_ARRAY,
    OE_JSON_OBJECT
} oe_json_type;

typedef struct oe_json oe_json;
typedef struct oe_json_member oe_json_member;

/* A parsed value: 24 bytes, so that a document of a million small values
 * stays a few tens of MiB at most (and the node cap below keeps it far
 * under that). All nodes and strings belong to their document. */
struct oe_json {
    uint8_t type;       /* oe_json_type */
    uint8_t fits_int64; /* INT: 1 if the integer is within int64 range */
    /* STRING: byte length (the text may contain NUL);
     * INT: length of the decimal text;
     * ARRAY: number of items; OBJECT: number of members. */
    uint32_t len;
    union {
        /* STRING: UTF-8 text, NUL-terminated. INT: canonical decimal text,
         * as Python prints the integer ("-0" becomes "0"), NUL-terminated. */
        const char *str;
        double num;              /* FLOAT: the value */
        oe_json *items;          /* ARRAY: len items */
        oe_json_member *members; /* OBJECT: len members, sorted by key bytes */
    };
    int64_t i64; /* INT: the value when fits_int64 */
};

struct oe_json_member {
    const char *key; /* UTF-8, NUL-terminated (may contain NUL) */
    uint32_t key_len;
    oe_json value;
};

/* The value of an INT or FLOAT as a double (beyond the double range an
 * integer is +-HUGE_VAL); 0 for other types. */
double oe_json_number(const oe_json *v);

typedef struct oe_json_doc oe_json_doc;

/* Default nesting limit (arrays and objects inside each other). */
#define OE_JSON_MAX_DEPTH 64
/* Largest integer literal accepted, in digits (Python's own limit is 4300). */
#define OE_JSON_MAX_INT_DIGITS 4300
/* Most values (scalars and containers) in one document. Bounds the memory a
 * document can take whatever its shape: at most about 24 bytes a value kept,
 * plus 48 a value while parsing, on top of the text (so a 1 MiB body costs
 * well under 16 MiB), instead of ~150 bytes a value for `[0,0,0,...]`. */
#define OE_JSON_MAX_NODES 100000
/* Largest input text (the lengths are 32-bit). */
#define OE_JSON_MAX_TEXT ((size_t)UINT32_MAX - 1)

/* Parses exactly one JSON value from buf[0..len), surrounded by optional
 * whitespace. buf need not be NUL-terminated. max_depth 0 means
 * OE_JSON_MAX_DEPTH. On success stores a new document in *out (the caller
 * frees it with oe_json_doc_free) and returns OE_OK. Returns OE_EINVAL when
 * the text is not acceptable JSON or passes a limit (a verdict on the
 * input, with a one-line reason in err naming the byte offset), or
 * OE_ENOMEM when memory ran out (no verdict: the same text may parse
 * later). *out is NULL on failure. (Return values from status.h.) */
int oe_json_parse(const char *buf, size_t len, int max_depth, oe_json_doc **out, char *err,
                  size_t errlen);

/* Frees a document and every node in it. NULL is allowed. */
void oe_json_doc_free(oe_json_doc *doc);

/* The root value of a document (owned by the document). */
const oe_json *oe_json_root(const oe_json_doc *doc);

/* The member of an object with this key, or NULL when v is not an object or
 * has no such key. key is NUL-terminated. */
const oe_json *oe_json_get(const oe_json *v, const char *key);

/* Serialization styles, after Python's json.dumps(..., sort_keys=True):
 * COMPACT uses separators (",", ":"), DEFAULT uses (", ", ": "). Both use
 * ensure_ascii escaping and Python's number formats. */
typedef enum oe_json_style { OE_JSON_COMPACT, OE_JSON_DEFAULT } oe_json_style;

/* Appends the serialization of v to out. Keys are sorted by code point.
 * Returns OE_OK, or (with out left as it was) OE_ELIMIT when out's limit
 * is reached, OE_ENOMEM when memory runs out, or OE_EINVAL when v cannot
 * be serialized (a string that is not valid UTF-8, a value built by hand
 * with a NULL where text or items belong, a float that is not finite). */
int oe_json_dump(oe_buf *out, const oe_json *v, oe_json_style style);

/* Appends s[0..len) (UTF-8) as a JSON string literal with ensure_ascii
 * escaping, quotes included. Returns OE_OK, or (with out left as it was)
 * OE_EINVAL when s is not valid UTF-8, OE_ELIMIT when out's limit is
 * reached, or OE_ENOMEM. */
int oe_json_dump_string(oe_buf *out, const char *s, size_t len);

/* The room oe_json_put_string needs for s[0..len): for a short text the
 * most any text of its length takes escaped (6 bytes a byte, and the
 * quotes), reckoned without reading it; for a longer one, what this text
 * can take (1 byte for a plain one, 2 for a quote or backslash, 3 for a
 * byte of a UTF-8 sequence, 6 for a control), read once: a 3 KB result
 * in a leaf would otherwise ask for 18 KB, kept with the leaf. Reading
 * takes about as long as escaping, so the texts of ordinary receipts (a
 * leaf of about 500 bytes in each proof) stay short. */
#define OE_JSON_ROOM_SHORT 1024
#define OE_JSON_ESCAPED_MAX 6
size_t oe_json_string_room_counted(const char *s, size_t len);
static inline size_t oe_json_string_room(const char *s, size_t len)
{
    return len <= OE_JSON_ROOM_SHORT ? OE_JSON_ESCAPED_MAX * len + 2
                                     : oe_json_string_room_counted(s, len);
}

/* Writes s[0..len) (UTF-8) as oe_json_dump_string does to d, which has
 * room for oe_json_string_room(s, len) bytes (the bytes past the end may
 * be written over too, within that room), for a writer that reserved the
 * room of a whole text at once. Returns the end, or NULL when s is not
 * valid UTF-8. */
char *oe_json_put_string(char *d, const char *s, size_t len);

/* Writes Python's repr() of a finite double into out (at least 32 bytes):
 * the shortest text that reads back as the same double, with Python's
 * layout: "1.0", "0.1", "1e+16", "1e-07", "-0.0", "1.5e+300".
 * Returns the length, or OE_EINVAL for NaN or infinity (or out NULL), or
 * OE_ELIMIT when outlen is too small. */
int oe_json_format_double(double d, char *out, size_t outlen);

/* Validates UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF). Returns 1 when valid. */
int oe_utf8_valid(const char *s, size_t len);

#endif
