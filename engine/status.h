/* One status type for resource and system failures.
 *
 * These say "the machine could not do it" (memory, a limit, the ledger, a
 * broker), never "the request is bad". Domain verdicts on a request travel
 * apart, as oe_error_code (request.h), and become receipts; an oe_rc other
 * than OE_OK never does: the work in hand stays uncommitted and is tried
 * again (SQLite keeps SQLITE_NOMEM apart from constraint errors the same way).
 *
 * Functions that return an oe_rc return OE_OK (0) or one of the negative
 * values below, so `if (rc != OE_OK)` and `if (rc < 0)` both read right.
 */
#ifndef OE_STATUS_H
#define OE_STATUS_H

typedef enum oe_rc {
    OE_OK = 0,
    OE_ENOMEM = -1,        /* out of memory */
    OE_ELIMIT = -2,        /* a stated limit was reached (buffer cap, budget) */
    OE_ESTORE = -3,        /* the ledger failed (I/O, corruption, replaced) */
    OE_EIO = -4,           /* another system call failed */
    OE_EINVAL = -5,        /* bad configuration or argument from the operator */
    OE_EUNAVAIL = -6,      /* the ledger (or the brokers) cannot be reached now: try
                              again later */
    OE_ERETRY = -7,        /* the ledger aborted a transaction for a transient
                              reason (deadlock, serialization): run it again now */
    OE_EDUP_NONCE = -8,    /* the ledger holds an execution of this nonce */
    OE_EDUP_APPROVAL = -9, /* the ledger holds an execution of this approval */
    OE_EREFUSED = -10,     /* a peer refused this process (authentication, TLS) */
    OE_EDUP_LOG = -11,     /* another process appended to this receipts log (the same
                              signing key twice): fail closed */
} oe_rc;

/* A short constant description of rc ("out of memory", ...). */
const char *oe_strerror(int rc);

#endif
