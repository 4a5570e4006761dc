/* Names of the oe_rc values (status.h). No state. */
#include "status.h"

const char *oe_strerror(int rc)
{
    switch (rc) {
    case OE_OK:
        return "success";
    case OE_ENOMEM:
        return "out of memory";
    case OE_ELIMIT:
        return "limit reached";
    case OE_ESTORE:
        return "ledger failure";
    case OE_EIO:
        return "system call failed";
    case OE_EINVAL:
        return "invalid argument";
    case OE_EUNAVAIL:
        return "unavailable now";
    case OE_ERETRY:
        return "ledger transaction aborted, retry";
    case OE_EDUP_NONCE:
        return "nonce already recorded";
    case OE_EDUP_APPROVAL:
        return "approval already used";
    case OE_EREFUSED:
        return "refused by the peer";
    case OE_EDUP_LOG:
        return "another process appended to this receipts log";
    }
    return "unknown error";
}
