/* A TCP relay on loopback: every connection accepted on 127.0.0.1:PORT is
 * joined byte for byte, both ways, to a new connection to
 * 127.0.0.1:TARGET. It gives the embedded broker a fixed bootstrap port
 * (`--broker-port`): librdkafka's mock cluster listens on a port the
 * system picks, and a client that bootstraps through the relay learns the
 * broker's own address from its metadata and connects there directly.
 *
 * There is no half-close (Kafka's protocol has none): once one side ends
 * and what it sent is passed on, both are closed.
 *
 * Limits: 256 connections at once (more are closed on accept, with a
 * warning), 64 KiB buffered per direction of each (reading stops while the
 * other side does not take it). One thread of its own, a poll() loop. */
#ifndef OE_RELAY_H
#define OE_RELAY_H

#include <stddef.h>

#define OE_RELAY_MAX_CONNECTIONS 256
#define OE_RELAY_BUFFER (64 * 1024)

typedef struct oe_relay oe_relay;

/* Listens on 127.0.0.1:port (0: a port the system picks); connections
 * wait in the backlog until the relay starts. Starts no thread. Returns
 * OE_OK, or with a reason in err OE_EIO (a system call failed: e.g. the
 * port is taken) or OE_ENOMEM (status.h). */
int oe_relay_new(int port, oe_relay **out, char *err, size_t errlen);

/* Starts the thread, relaying to 127.0.0.1:target_port. Once only.
 * Returns OE_OK, or OE_EIO (no thread) with a reason in err. */
int oe_relay_start(oe_relay *r, int target_port, char *err, size_t errlen);

/* The port it listens on. */
int oe_relay_port(const oe_relay *r);

/* Connections relayed so far (accepted and joined to the target). */
unsigned long oe_relay_accepted(const oe_relay *r);

/* Stops the thread and closes every connection and the listener. */
void oe_relay_free(oe_relay *r);

#endif
