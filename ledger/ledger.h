/* The ledger backends behind engine/store.h, and how a location picks one.
 *
 *   sqlite:///relative.db, sqlite:////absolute/path.db  a SQLite file
 *     (SQLAlchemy's convention, as the original service used it);
 *   postgresql://user:pass@host:port/db?sslmode=...  (or postgres://)
 *     a PostgreSQL database through libpq (its URI syntax and parameters).
 *
 * A writer creates the schema, or upgrades an older one in place (a version
 * table records each step) when it may: always on SQLite; on PostgreSQL only
 * with a role that may change the schema (its owner), else it refuses an
 * older schema and `openexec ledger migrate` upgrades it. A reader only
 * looks up.
 */
#ifndef OE_LEDGER_H
#define OE_LEDGER_H

#include <stddef.h>

#include "engine/store.h"

/* A SQLite file at path. Returns OE_OK, or with a reason in err
 * (status.h): OE_ESTORE when SQLite cannot open or set up the file, finds
 * it damaged or of a schema newer than this binary's; OE_EINVAL for a
 * reader (readonly) on an older schema, which only a writer upgrades;
 * OE_EUNAVAIL while another process holds the file past the busy timeout;
 * OE_ENOMEM. */
int oe_sqlite_store_new(const char *path, int readonly, oe_store_sync sync, oe_store **out,
                        char *err, size_t errlen);

/* A PostgreSQL database at a libpq URI. The first connection must succeed
 * (a wrong address or password is reported at start-up); later losses
 * are reconnected on the next call and reported as OE_EUNAVAIL
 * meanwhile. Returns OE_OK, or with a reason in err (the password masked):
 * OE_EINVAL for a URL libpq cannot read; OE_EUNAVAIL when the database
 * cannot be reached, refuses the connection or is short of resources;
 * OE_ESTORE when it refuses a statement, or its schema (newer, or older
 * and not upgraded) or this role's grants are not usable; OE_ERETRY when a
 * schema upgrade was aborted (deadlock); OE_ENOMEM (status.h). */
int oe_pg_store_new(const char *url, int readonly, oe_store **out, char *err, size_t errlen);

/* Brings the schema of a ledger to this binary's version (the owner's
 * role runs it: `openexec ledger migrate`); *was and *now are the versions
 * before and after. A worker whose role may not change the schema refuses
 * to start on an older one (PostgreSQL); a SQLite writer upgrades it
 * itself. Returns OE_OK, or with a reason in err the codes of
 * oe_pg_store_new and oe_sqlite_store_new (as for a writer). */
int oe_pg_migrate(const char *url, int *was, int *now, char *err, size_t errlen);
int oe_sqlite_migrate(const char *path, int *was, int *now, char *err, size_t errlen);

/* What a ledger URL names. */
typedef enum oe_ledger_kind {
    OE_LEDGER_INVALID,
    OE_LEDGER_SQLITE,
    OE_LEDGER_POSTGRESQL
} oe_ledger_kind;

/* Classifies url; for SQLite, *path points into url at the file's path.
 * OE_LEDGER_INVALID with a reason in err for anything else. */
oe_ledger_kind oe_ledger_parse_url(const char *url, const char **path, char *err, size_t errlen);

/* The display form of a ledger location, for messages and logs (never for
 * HTTP answers, which name no host, user or database): a sqlite: URL as it
 * is; anything else parsed as libpq parses it (PQconninfoParse: a URI or a
 * key=value string) and rebuilt as a postgresql:// URI with every secret
 * (password, sslpassword) replaced by "***"; input libpq cannot parse is
 * "***" whole. out is always terminated (truncated to outlen). */
void oe_ledger_mask_url(const char *url, char *out, size_t outlen);

/* The versions of the ledger's libraries linked in: "SQLite 3.40.1" and
 * "libpq 15.4", one per line ("\n" after each), into out. */
void oe_ledger_library_versions(char *out, size_t outlen);

#endif
