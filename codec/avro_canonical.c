/* Parsing Canonical Form of Avro schemas and the CRC-64-AVRO fingerprint
 * (Avro specification, "Schema Fingerprints" and "Parsing Canonical Form
 * for Schemas"). avro-c 1.11.1 has neither: avro_schema_to_json keeps
 * attributes and whitespace the canonical form strips.
 */
#include "codec/avro_canonical.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json.h"
#include "engine/status.h"

/* CRC-64-AVRO table: entry i is i run through eight rounds of
 * fp = (fp >> 1) ^ (0xc15d213aa4d7a795 & -(fp & 1)). */
static const uint64_t crc64_avro_table[256] = {
    0x0000000000000000ULL, 0x2cf1cba6b75351faULL, 0x59e3974d6ea6a3f4ULL, 0x75125cebd9f5f20eULL,
    0xb3c72e9add4d47e8ULL, 0x9f36e53c6a1e1612ULL, 0xea24b9d7b3ebe41cULL, 0xc6d5727104b8b5e6ULL,
    0xe5341f40f335c0fbULL, 0xc9c5d4e644669101ULL, 0xbcd7880d9d93630fULL, 0x902643ab2ac032f5ULL,
    0x56f331da2e788713ULL, 0x7a02fa7c992bd6e9ULL, 0x0f10a69740de24e7ULL, 0x23e16d31f78d751dULL,
    0x48d27cf4afc4ceddULL, 0x6423b75218979f27ULL, 0x1131ebb9c1626d29ULL, 0x3dc0201f76313cd3ULL,
    0xfb15526e72898935ULL, 0xd7e499c8c5dad8cfULL, 0xa2f6c5231c2f2ac1ULL, 0x8e070e85ab7c7b3bULL,
    0xade663b45cf10e26ULL, 0x8117a812eba25fdcULL, 0xf405f4f93257add2ULL, 0xd8f43f5f8504fc28ULL,
    0x1e214d2e81bc49ceULL, 0x32d0868836ef1834ULL, 0x47c2da63ef1aea3aULL, 0x6b3311c55849bbc0ULL,
    0x91a4f9e95f899dbaULL, 0xbd55324fe8dacc40ULL, 0xc8476ea4312f3e4eULL, 0xe4b6a502867c6fb4ULL,
    0x2263d77382c4da52ULL, 0x0e921cd535978ba8ULL, 0x7b80403eec6279a6ULL, 0x57718b985b31285cULL,
    0x7490e6a9acbc5d41ULL, 0x58612d0f1bef0cbbULL, 0x2d7371e4c21afeb5ULL, 0x0182ba427549af4fULL,
    0xc757c83371f11aa9ULL, 0xeba60395c6a24b53ULL, 0x9eb45f7e1f57b95dULL, 0xb24594d8a804e8a7ULL,
    0xd976851df04d5367ULL, 0xf5874ebb471e029dULL, 0x809512509eebf093ULL, 0xac64d9f629b8a169ULL,
    0x6ab1ab872d00148fULL, 0x464060219a534575ULL, 0x33523cca43a6b77bULL, 0x1fa3f76cf4f5e681ULL,
    0x3c429a5d0378939cULL, 0x10b351fbb42bc266ULL, 0x65a10d106dde3068ULL, 0x4950c6b6da8d6192ULL,
    0x8f85b4c7de35d474ULL, 0xa3747f616966858eULL, 0xd666238ab0937780ULL, 0xfa97e82c07c0267aULL,
    0xa1f3b1a7f6bc745fULL, 0x8d027a0141ef25a5ULL, 0xf81026ea981ad7abULL, 0xd4e1ed4c2f498651ULL,
    0x12349f3d2bf133b7ULL, 0x3ec5549b9ca2624dULL, 0x4bd7087045579043ULL, 0x6726c3d6f204c1b9ULL,
    0x44c7aee70589b4a4ULL, 0x68366541b2dae55eULL, 0x1d2439aa6b2f1750ULL, 0x31d5f20cdc7c46aaULL,
    0xf700807dd8c4f34cULL, 0xdbf14bdb6f97a2b6ULL, 0xaee31730b66250b8ULL, 0x8212dc9601310142ULL,
    0xe921cd535978ba82ULL, 0xc5d006f5ee2beb78ULL, 0xb0c25a1e37de1976ULL, 0x9c3391b8808d488cULL,
    0x5ae6e3c98435fd6aULL, 0x7617286f3366ac90ULL, 0x03057484ea935e9eULL, 0x2ff4bf225dc00f64ULL,
    0x0c15d213aa4d7a79ULL, 0x20e419b51d1e2b83ULL, 0x55f6455ec4ebd98dULL, 0x79078ef873b88877ULL,
    0xbfd2fc8977003d91ULL, 0x9323372fc0536c6bULL, 0xe6316bc419a69e65ULL, 0xcac0a062aef5cf9fULL,
    0x3057484ea935e9e5ULL, 0x1ca683e81e66b81fULL, 0x69b4df03c7934a11ULL, 0x454514a570c01bebULL,
    0x839066d47478ae0dULL, 0xaf61ad72c32bfff7ULL, 0xda73f1991ade0df9ULL, 0xf6823a3fad8d5c03ULL,
    0xd563570e5a00291eULL, 0xf9929ca8ed5378e4ULL, 0x8c80c04334a68aeaULL, 0xa0710be583f5db10ULL,
    0x66a47994874d6ef6ULL, 0x4a55b232301e3f0cULL, 0x3f47eed9e9ebcd02ULL, 0x13b6257f5eb89cf8ULL,
    0x788534ba06f12738ULL, 0x5474ff1cb1a276c2ULL, 0x2166a3f7685784ccULL, 0x0d976851df04d536ULL,
    0xcb421a20dbbc60d0ULL, 0xe7b3d1866cef312aULL, 0x92a18d6db51ac324ULL, 0xbe5046cb024992deULL,
    0x9db12bfaf5c4e7c3ULL, 0xb140e05c4297b639ULL, 0xc452bcb79b624437ULL, 0xe8a377112c3115cdULL,
    0x2e7605602889a02bULL, 0x0287cec69fdaf1d1ULL, 0x7795922d462f03dfULL, 0x5b64598bf17c5225ULL,
    0xc15d213aa4d7a795ULL, 0xedacea9c1384f66fULL, 0x98beb677ca710461ULL, 0xb44f7dd17d22559bULL,
    0x729a0fa0799ae07dULL, 0x5e6bc406cec9b187ULL, 0x2b7998ed173c4389ULL, 0x0788534ba06f1273ULL,
    0x24693e7a57e2676eULL, 0x0898f5dce0b13694ULL, 0x7d8aa9373944c49aULL, 0x517b62918e179560ULL,
    0x97ae10e08aaf2086ULL, 0xbb5fdb463dfc717cULL, 0xce4d87ade4098372ULL, 0xe2bc4c0b535ad288ULL,
    0x898f5dce0b136948ULL, 0xa57e9668bc4038b2ULL, 0xd06cca8365b5cabcULL, 0xfc9d0125d2e69b46ULL,
    0x3a487354d65e2ea0ULL, 0x16b9b8f2610d7f5aULL, 0x63abe419b8f88d54ULL, 0x4f5a2fbf0fabdcaeULL,
    0x6cbb428ef826a9b3ULL, 0x404a89284f75f849ULL, 0x3558d5c396800a47ULL, 0x19a91e6521d35bbdULL,
    0xdf7c6c14256bee5bULL, 0xf38da7b29238bfa1ULL, 0x869ffb594bcd4dafULL, 0xaa6e30fffc9e1c55ULL,
    0x50f9d8d3fb5e3a2fULL, 0x7c0813754c0d6bd5ULL, 0x091a4f9e95f899dbULL, 0x25eb843822abc821ULL,
    0xe33ef64926137dc7ULL, 0xcfcf3def91402c3dULL, 0xbadd610448b5de33ULL, 0x962caaa2ffe68fc9ULL,
    0xb5cdc793086bfad4ULL, 0x993c0c35bf38ab2eULL, 0xec2e50de66cd5920ULL, 0xc0df9b78d19e08daULL,
    0x060ae909d526bd3cULL, 0x2afb22af6275ecc6ULL, 0x5fe97e44bb801ec8ULL, 0x7318b5e20cd34f32ULL,
    0x182ba427549af4f2ULL, 0x34da6f81e3c9a508ULL, 0x41c8336a3a3c5706ULL, 0x6d39f8cc8d6f06fcULL,
    0xabec8abd89d7b31aULL, 0x871d411b3e84e2e0ULL, 0xf20f1df0e77110eeULL, 0xdefed65650224114ULL,
    0xfd1fbb67a7af3409ULL, 0xd1ee70c110fc65f3ULL, 0xa4fc2c2ac90997fdULL, 0x880de78c7e5ac607ULL,
    0x4ed895fd7ae273e1ULL, 0x62295e5bcdb1221bULL, 0x173b02b01444d015ULL, 0x3bcac916a31781efULL,
    0x60ae909d526bd3caULL, 0x4c5f5b3be5388230ULL, 0x394d07d03ccd703eULL, 0x15bccc768b9e21c4ULL,
    0xd369be078f269422ULL, 0xff9875a13875c5d8ULL, 0x8a8a294ae18037d6ULL, 0xa67be2ec56d3662cULL,
    0x859a8fdda15e1331ULL, 0xa96b447b160d42cbULL, 0xdc791890cff8b0c5ULL, 0xf088d33678abe13fULL,
    0x365da1477c1354d9ULL, 0x1aac6ae1cb400523ULL, 0x6fbe360a12b5f72dULL, 0x434ffdaca5e6a6d7ULL,
    0x287cec69fdaf1d17ULL, 0x048d27cf4afc4cedULL, 0x719f7b249309bee3ULL, 0x5d6eb082245aef19ULL,
    0x9bbbc2f320e25affULL, 0xb74a095597b10b05ULL, 0xc25855be4e44f90bULL, 0xeea99e18f917a8f1ULL,
    0xcd48f3290e9addecULL, 0xe1b9388fb9c98c16ULL, 0x94ab6464603c7e18ULL, 0xb85aafc2d76f2fe2ULL,
    0x7e8fddb3d3d79a04ULL, 0x527e16156484cbfeULL, 0x276c4afebd7139f0ULL, 0x0b9d81580a22680aULL,
    0xf10a69740de24e70ULL, 0xddfba2d2bab11f8aULL, 0xa8e9fe396344ed84ULL, 0x8418359fd417bc7eULL,
    0x42cd47eed0af0998ULL, 0x6e3c8c4867fc5862ULL, 0x1b2ed0a3be09aa6cULL, 0x37df1b05095afb96ULL,
    0x143e7634fed78e8bULL, 0x38cfbd924984df71ULL, 0x4ddde17990712d7fULL, 0x612c2adf27227c85ULL,
    0xa7f958ae239ac963ULL, 0x8b08930894c99899ULL, 0xfe1acfe34d3c6a97ULL, 0xd2eb0445fa6f3b6dULL,
    0xb9d81580a22680adULL, 0x9529de261575d157ULL, 0xe03b82cdcc802359ULL, 0xccca496b7bd372a3ULL,
    0x0a1f3b1a7f6bc745ULL, 0x26eef0bcc83896bfULL, 0x53fcac5711cd64b1ULL, 0x7f0d67f1a69e354bULL,
    0x5cec0ac051134056ULL, 0x701dc166e64011acULL, 0x050f9d8d3fb5e3a2ULL, 0x29fe562b88e6b258ULL,
    0xef2b245a8c5e07beULL, 0xc3daeffc3b0d5644ULL, 0xb6c8b317e2f8a44aULL, 0x9a3978b155abf5b0ULL,
};

#define CRC64_AVRO_EMPTY 0xc15d213aa4d7a795ULL

uint64_t oe_avro_crc64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t fp = CRC64_AVRO_EMPTY;
    for (size_t i = 0; i < len; i++)
        fp = (fp >> 8) ^ crc64_avro_table[(fp ^ p[i]) & 0xff];
    return fp;
}

/* ---- Parsing Canonical Form ---- */

typedef struct canon_ctx {
    oe_buf *out;
    char *err;
    size_t errlen;
    char **defined; /* full names of the named types written so far */
    size_t ndefined, capdefined;
    /* OE_OK, or the first failure (canon_error: OE_EINVAL; oom: OE_ENOMEM
     * or the output buffer's OE_ELIMIT). Every failure goes through one of
     * the two and ends the walk, so a caller that sees a step fail returns
     * this. */
    int rc;
} canon_ctx;

static const char *const primitive_names[] = {"null",  "boolean", "int",   "long",
                                              "float", "double",  "bytes", "string"};

static int is_primitive(const char *s)
{
    for (size_t i = 0; i < sizeof primitive_names / sizeof primitive_names[0]; i++)
        if (strcmp(s, primitive_names[i]) == 0)
            return 1;
    return 0;
}

static int canon_error(canon_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int canon_error(canon_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return c->rc = OE_EINVAL;
}

/* A failed allocation, or a failed append to the output (whose buffer
 * says why). */
static int oom(canon_ctx *c)
{
    snprintf(c->err, c->errlen, "out of memory (or output limit reached)");
    int why = oe_buf_failed(c->out);
    return c->rc = why ? why : OE_ENOMEM;
}

/* [STRINGS] A JSON string literal with escapes replaced by their UTF-8
 * characters; only what JSON itself requires stays escaped (quote,
 * backslash, control characters), which no valid Avro name contains. */
static int put_string(canon_ctx *c, const char *s, size_t len)
{
    if (oe_buf_putc(c->out, '"') != 0)
        return oom(c);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        if (oe_buf_append(c->out, s + run, i - run) != 0)
            return oom(c);
        int rc = (ch == '"' || ch == '\\') ? oe_buf_printf(c->out, "\\%c", ch)
                                           : oe_buf_printf(c->out, "\\u%04x", ch);
        if (rc != 0)
            return oom(c);
        run = i + 1;
    }
    if (oe_buf_append(c->out, s + run, len - run) != 0 || oe_buf_putc(c->out, '"') != 0)
        return oom(c);
    return 0;
}

static int put(canon_ctx *c, const char *text)
{
    return oe_buf_puts(c->out, text) == 0 ? 0 : oom(c);
}

/* A name string: no NUL inside, not empty. */
static int name_ok(const oe_json *v)
{
    return v && v->type == OE_JSON_STRING && v->len > 0 && !memchr(v->str, '\0', v->len);
}

/* [FULLNAMES] name resolved against the enclosing namespace ns ("" = none).
 * Returns a new string, or NULL when out of memory. */
static char *full_name(const char *name, const char *ns)
{
    if (strchr(name, '.') || !ns[0])
        return strdup(name);
    size_t a = strlen(ns), b = strlen(name);
    char *s = malloc(a + 1 + b + 1);
    if (s) {
        memcpy(s, ns, a);
        s[a] = '.';
        memcpy(s + a + 1, name, b + 1);
    }
    return s;
}

static int is_defined(const canon_ctx *c, const char *full)
{
    for (size_t i = 0; i < c->ndefined; i++)
        if (strcmp(c->defined[i], full) == 0)
            return 1;
    return 0;
}

static int add_defined(canon_ctx *c, char *full)
{
    if (c->ndefined == c->capdefined) {
        size_t cap = c->capdefined ? c->capdefined * 2 : 8;
        char **p = realloc(c->defined, cap * sizeof *p);
        if (!p)
            return OE_ENOMEM;
        c->defined = p;
        c->capdefined = cap;
    }
    c->defined[c->ndefined++] = full;
    return OE_OK;
}

static int canon(canon_ctx *c, const oe_json *v, const char *ns);

/* A reference to a type by name: a primitive or a named type. */
static int canon_name_ref(canon_ctx *c, const oe_json *v, const char *ns)
{
    if (!name_ok(v))
        return canon_error(c, "invalid type name");
    if (is_primitive(v->str))
        return put_string(c, v->str, v->len);
    char *full = full_name(v->str, ns);
    if (!full)
        return oom(c);
    int rc = put_string(c, full, strlen(full));
    free(full);
    return rc;
}

/* record, error, enum or fixed. */
static int canon_named(canon_ctx *c, const oe_json *v, const char *type, const char *ns)
{
    const oe_json *name = oe_json_get(v, "name");
    if (!name_ok(name))
        return canon_error(c, "%s schema without a valid \"name\"", type);
    const oe_json *space = oe_json_get(v, "namespace");
    const char *own_ns = ns;
    if (space && space->type != OE_JSON_NULL) {
        if (space->type != OE_JSON_STRING || memchr(space->str, '\0', space->len))
            return canon_error(c, "%s schema with an invalid \"namespace\"", type);
        own_ns = space->str;
    }
    char *full = full_name(name->str, own_ns);
    if (!full)
        return oom(c);
    if (is_defined(c, full)) { /* a later occurrence is written as its name */
        int rc = put_string(c, full, strlen(full));
        free(full);
        return rc;
    }
    if (add_defined(c, full) != 0) {
        free(full);
        return oom(c);
    }
    /* The namespace of what is nested inside: that of the full name. */
    char *child_ns = strdup(full);
    if (!child_ns)
        return oom(c);
    char *dot = strrchr(child_ns, '.');
    if (dot)
        *dot = '\0';
    else
        child_ns[0] = '\0';

    int rc = OE_OK; /* each `goto out` follows a failure, recorded in c->rc */
    const char *kind = strcmp(type, "error") == 0 ? "record" : type;
    if (put(c, "{\"name\":") || put_string(c, full, strlen(full)) || put(c, ",\"type\":") ||
        put_string(c, kind, strlen(kind)))
        goto out;
    if (strcmp(kind, "record") == 0) {
        const oe_json *fields = oe_json_get(v, "fields");
        if (!fields || fields->type != OE_JSON_ARRAY) {
            canon_error(c, "record %s without a \"fields\" array", full);
            goto out;
        }
        if (put(c, ",\"fields\":["))
            goto out;
        for (size_t i = 0; i < fields->len; i++) {
            const oe_json *f = &fields->items[i];
            const oe_json *fname = oe_json_get(f, "name");
            const oe_json *ftype = oe_json_get(f, "type");
            if (!name_ok(fname) || !ftype) {
                canon_error(c, "record %s has a field without a valid \"name\" and \"type\"", full);
                goto out;
            }
            if ((i && put(c, ",")) || put(c, "{\"name\":") ||
                put_string(c, fname->str, fname->len) || put(c, ",\"type\":") ||
                canon(c, ftype, child_ns) || put(c, "}"))
                goto out;
        }
        if (put(c, "]"))
            goto out;
    } else if (strcmp(kind, "enum") == 0) {
        const oe_json *symbols = oe_json_get(v, "symbols");
        if (!symbols || symbols->type != OE_JSON_ARRAY) {
            canon_error(c, "enum %s without a \"symbols\" array", full);
            goto out;
        }
        if (put(c, ",\"symbols\":["))
            goto out;
        for (size_t i = 0; i < symbols->len; i++) {
            const oe_json *s = &symbols->items[i];
            if (!name_ok(s)) {
                canon_error(c, "enum %s has an invalid symbol", full);
                goto out;
            }
            if ((i && put(c, ",")) || put_string(c, s->str, s->len))
                goto out;
        }
        if (put(c, "]"))
            goto out;
    } else { /* fixed */
        const oe_json *size = oe_json_get(v, "size");
        /* [INTEGERS] the parser keeps integers as canonical decimal text */
        if (!size || size->type != OE_JSON_INT || size->str[0] == '-') {
            canon_error(c, "fixed %s without a valid \"size\"", full);
            goto out;
        }
        if (put(c, ",\"size\":") || put(c, size->str))
            goto out;
    }
    rc = put(c, "}");
out:
    free(child_ns);
    return rc != OE_OK ? rc : c->rc;
}

static int canon(canon_ctx *c, const oe_json *v, const char *ns)
{
    switch (v->type) {
    case OE_JSON_STRING:
        return canon_name_ref(c, v, ns);
    case OE_JSON_ARRAY: /* union */
        if (put(c, "["))
            return c->rc;
        for (size_t i = 0; i < v->len; i++)
            if ((i && put(c, ",")) || canon(c, &v->items[i], ns))
                return c->rc;
        return put(c, "]");
    case OE_JSON_OBJECT:
        break;
    default:
        return canon_error(c, "not a schema: expected a string, array or object");
    }
    const oe_json *type = oe_json_get(v, "type");
    if (!type)
        return canon_error(c, "schema object without \"type\"");
    if (!name_ok(type))
        return canon_error(c, "schema object whose \"type\" is not a type name");
    const char *t = type->str;
    if (is_primitive(t)) /* [PRIMITIVES] {"type":"int"} -> "int" */
        return put_string(c, t, type->len);
    if (!strcmp(t, "record") || !strcmp(t, "error") || !strcmp(t, "enum") || !strcmp(t, "fixed"))
        return canon_named(c, v, t, ns);
    if (!strcmp(t, "array") || !strcmp(t, "map")) {
        const char *key = t[0] == 'a' ? "items" : "values";
        const oe_json *sub = oe_json_get(v, key);
        if (!sub)
            return canon_error(c, "%s schema without its element type", t);
        if (put(c, "{\"type\":") || put_string(c, t, type->len) || put(c, ",\"") || put(c, key) ||
            put(c, "\":") || canon(c, sub, ns))
            return c->rc;
        return put(c, "}");
    }
    /* {"type": "SomeName"}: a reference to a named type. */
    return canon_name_ref(c, type, ns);
}

int oe_avro_canonical_form(const char *schema_json, size_t len, oe_buf *out, char *err,
                           size_t errlen)
{
    char perr[200];
    oe_json_doc *doc;
    int rc = oe_json_parse(schema_json, len, 0, &doc, perr, sizeof perr);
    if (rc != OE_OK) {
        snprintf(err, errlen, "schema is not valid JSON: %s", perr);
        return rc;
    }
    canon_ctx c = {.out = out, .err = err, .errlen = errlen};
    size_t start = out->len;
    rc = canon(&c, oe_json_root(doc), "");
    for (size_t i = 0; i < c.ndefined; i++)
        free(c.defined[i]);
    free(c.defined);
    oe_json_doc_free(doc);
    if (rc != 0 && out->data) { /* leave out as it was */
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}
