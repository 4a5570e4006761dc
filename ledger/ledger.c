/* Ledger locations (ledger.h), and their display form. No state. */
#include "ledger.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

oe_ledger_kind oe_ledger_parse_url(const char *url, const char **path, char *err, size_t errlen)
{
    if (strncmp(url, "sqlite:///", 10) == 0) {
        if (!url[10]) {
            snprintf(err, errlen, "%.200s: no file after sqlite:///", url);
            return OE_LEDGER_INVALID;
        }
        *path = url + 10;
        return OE_LEDGER_SQLITE;
    }
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return OE_LEDGER_POSTGRESQL;
    char masked[256];
    oe_ledger_mask_url(url, masked, sizeof masked);
    snprintf(err, errlen,
             "%s: a ledger URL is sqlite:///relative.db, sqlite:////absolute/path.db or "
             "postgresql://user:pass@host:port/db",
             masked);
    return OE_LEDGER_INVALID;
}

/* Appends to a bounded output (out[len], *o used), always terminated. */
static void put(char *out, size_t len, size_t *o, const char *text)
{
    for (; *text && *o + 1 < len; text++)
        out[(*o)++] = *text;
    if (len)
        out[*o < len ? *o : len - 1] = '\0';
}

/* Appends text percent-encoded as a URI component (RFC 3986 unreserved
 * characters stay as they are), so that the display form reads back as the
 * same value. */
static void put_encoded(char *out, size_t len, size_t *o, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char c[4] = {(char)*p, '\0', '\0', '\0'};
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.' || *p == '_' || *p == '~')) {
            c[0] = '%';
            c[1] = hex[*p >> 4];
            c[2] = hex[*p & 15];
        }
        put(out, len, o, c);
    }
}

/* A value that could itself be a connection string (libpq expands a dbname
 * holding one), and so hold a password. */
static int may_hold_conninfo(const char *v)
{
    return strchr(v, '=') || strstr(v, "://");
}

void oe_ledger_mask_url(const char *url, char *out, size_t outlen)
{
    size_t o = 0;
    put(out, outlen, &o, "");
    if (strncmp(url, "sqlite:", 7) == 0) {
        put(out, outlen, &o, url); /* a file name: nothing secret */
        return;
    }
    /* Parsed as libpq parses it (URI or key=value), so that the display
     * form hides exactly what libpq would use as a password, whatever the
     * spelling: '#', '?' or '@' inside it, %-encoded keys, password= in the
     * query string. Input libpq cannot parse is shown as *** whole (its
     * parse error may quote the password). */
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &why);
    PQfreemem(why);
    if (!opts) {
        put(out, outlen, &o, "***");
        return;
    }
    const char *user = NULL, *host = NULL, *port = NULL, *dbname = NULL;
    int password = 0;
    for (const PQconninfoOption *p = opts; p->keyword; p++) {
        if (!p->val)
            continue;
        if (strcmp(p->keyword, "user") == 0)
            user = p->val;
        else if (strcmp(p->keyword, "password") == 0)
            password = 1;
        else if (strcmp(p->keyword, "host") == 0)
            host = p->val;
        else if (strcmp(p->keyword, "port") == 0)
            port = p->val;
        else if (strcmp(p->keyword, "dbname") == 0)
            dbname = p->val;
    }
    /* Several hosts (h1,h2) go to the query string, where they need no
     * brackets or pairing with their ports. */
    int hosts_in_query = (host && strchr(host, ',')) || (port && strchr(port, ','));
    put(out, outlen, &o, strncmp(url, "postgres://", 11) == 0 ? "postgres://" : "postgresql://");
    if (user) {
        put_encoded(out, outlen, &o, user);
        put(out, outlen, &o, password ? ":***@" : "@");
    }
    if (host && !hosts_in_query) {
        int ipv6 = strchr(host, ':') != NULL;
        put(out, outlen, &o, ipv6 ? "[" : "");
        if (ipv6)
            put(out, outlen, &o, host);
        else
            put_encoded(out, outlen, &o, host);
        put(out, outlen, &o, ipv6 ? "]" : "");
    }
    if (port && !hosts_in_query) {
        put(out, outlen, &o, ":");
        put_encoded(out, outlen, &o, port);
    }
    if (dbname) {
        put(out, outlen, &o, "/");
        if (may_hold_conninfo(dbname))
            put(out, outlen, &o, "***");
        else
            put_encoded(out, outlen, &o, dbname);
    }
    char sep = '?';
    for (const PQconninfoOption *p = opts; p->keyword; p++) {
        if (!p->val || strcmp(p->keyword, "dbname") == 0 || (strcmp(p->keyword, "user") == 0) ||
            (strcmp(p->keyword, "password") == 0 && user) ||
            (!hosts_in_query &&
             (strcmp(p->keyword, "host") == 0 || strcmp(p->keyword, "port") == 0)))
            continue;
        char head[2] = {sep, '\0'};
        put(out, outlen, &o, head);
        put_encoded(out, outlen, &o, p->keyword);
        put(out, outlen, &o, "=");
        /* dispchar "*": libpq's own mark of a secret (password,
         * sslpassword). */
        if (p->dispchar && strchr(p->dispchar, '*'))
            put(out, outlen, &o, "***");
        else
            put_encoded(out, outlen, &o, p->val);
        sep = '&';
    }
    PQconninfoFree(opts);
}

void oe_ledger_library_versions(char *out, size_t outlen)
{
    int pq = PQlibVersion(); /* major * 10000 + minor since PostgreSQL 10 */
    snprintf(out, outlen, "SQLite %s\nlibpq %d.%d\n", sqlite3_libversion(), pq / 10000, pq % 10000);
}
