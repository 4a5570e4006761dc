/* Ledger locations (ledger.h). No state. */
#include "ledger.h"

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

void oe_ledger_mask_url(const char *url, char *out, size_t outlen)
{
    /* scheme://user:password@host...: the password lies between the first
     * ':' after "//" and the last '@' of the authority; a password=...
     * parameter in the query string is masked too. */
    char buf[1024];
    const char *auth = strstr(url, "//");
    const char *at = NULL, *colon = NULL;
    if (auth) {
        auth += 2;
        size_t end = strcspn(auth, "/?#");
        for (size_t i = 0; i < end; i++)
            if (auth[i] == '@')
                at = auth + i;
        if (at)
            colon = memchr(auth, ':', (size_t)(at - auth));
    }
    if (colon)
        snprintf(buf, sizeof buf, "%.*s:***%s", (int)(colon - url), url, at);
    else
        snprintf(buf, sizeof buf, "%s", url);
    size_t o = 0;
    for (const char *p = buf; *p && o + 1 < outlen;) {
        if (strncmp(p, "password=", 9) == 0) {
            for (const char *m = "password=***"; *m && o + 1 < outlen; m++)
                out[o++] = *m;
            p += 9 + strcspn(p + 9, "&#");
        } else {
            out[o++] = *p++;
        }
    }
    if (outlen)
        out[o] = '\0';
}
