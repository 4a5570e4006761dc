/* The /execute bridge: publishes a request to the requests topic and waits
 * for its receipt on the receipts topic, whichever worker produced it.
 *
 * A request message carries the header openexec.correlation; workers copy
 * it to the receipt, and the bridge's receipts consumer hands the receipt
 * to the waiter with that id. No thread waits per request: the reply is a
 * callback from the bridge thread.
 */
#ifndef OE_BRIDGE_H
#define OE_BRIDGE_H

#include <stddef.h>

#include "codec/codec.h"
#include "kafka/kafka.h"
#include "kafka/kafka_metrics.h"

typedef struct oe_bridge oe_bridge;

/* Called exactly once per submitted request: with the receipt, or with
 * receipt NULL, an HTTP status (503 could not publish / shutting down, 504
 * no receipt in time) and a reason. The receipt is valid only during the
 * call. Runs on the bridge thread (or on the submitting thread when the
 * request cannot be published at all). */
typedef void (*oe_bridge_reply_fn)(void *ctx, const oe_receipt *receipt, int status,
                                   const char *reason);

/* Allocates the bridge and checks the configuration of its producer (for
 * requests) and consumer (of the receipts topic, from its end); starts
 * nothing. timeout_ms bounds each wait. Returns OE_OK, or an oe_rc
 * (status.h) with a reason in err: OE_EINVAL (a refused property), OE_EIO
 * (no randomness for correlation ids), or what oe_codec_new returned. */
int oe_bridge_new(const oe_kafka_settings *k, oe_kafka_metrics *metrics, long timeout_ms,
                  oe_bridge **out, char *err, size_t errlen);

/* Signed receipts: answer only receipts whose proof verifies against
 * these n Ed25519 public keys (borrowed; they must outlive the bridge);
 * others are ignored and counted (bridge_refused), and the request waits
 * on for a genuine receipt or its timeout. n = 0: receipts are not
 * checked. Call before oe_bridge_start. */
void oe_bridge_set_trusted(oe_bridge *b, const unsigned char (*keys)[32], size_t n);

/* Creates the producer and consumer (librdkafka's threads) and starts the
 * bridge thread. Once only; a request submitted before is answered 503.
 * Returns OE_OK, or an oe_rc (status.h) with a reason: OE_EINVAL (a
 * combination of properties librdkafka refuses), OE_EIO. */
int oe_bridge_start(oe_bridge *b, char *err, size_t errlen);

/* 1 once the receipts consumer is positioned; else 0 with a reason. */
int oe_bridge_ready(oe_bridge *b, char *reason, size_t len);

/* Publishes a JSON request body and arranges for reply. req is the body as
 * the workers will decode it (oe_codec_decode_json_request; valid: it
 * decoded as a valid request), borrowed for the call: its nonce keys the
 * message and, with its request hash, names the only receipt that may
 * answer. */
void oe_bridge_submit(oe_bridge *b, const char *body, size_t len, const oe_request *req, int valid,
                      oe_bridge_reply_fn reply, void *ctx);

/* Answers every waiting request with 503 and refuses new ones; call before
 * stopping the HTTP server. */
void oe_bridge_stop(oe_bridge *b);

/* Stops the bridge if needed and frees it. NULL is allowed. */
void oe_bridge_free(oe_bridge *b);

#endif
