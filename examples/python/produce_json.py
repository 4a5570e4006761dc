#!/usr/bin/env python3
"""Publishes one OpenExec execution request as JSON to the requests topic.

    python3 produce_json.py --brokers 127.0.0.1:9092 --action add \
        --payload '{"a": 2, "b": 3}' --nonce order-1001

The message value is the request object as JSON text (its first byte must
be "{"); the key is the nonce, as `openexec produce` does. The program
waits until the broker has acknowledged the message (at most --timeout
seconds), prints one JSON line saying where it landed, and exits 0; it
exits 1 when the message could not be delivered in time.

Needs confluent-kafka (Debian: python3-confluent-kafka).
"""

import argparse
import json
import os
import sys
import uuid

from confluent_kafka import Producer


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokers", required=True, help="bootstrap.servers, e.g. 127.0.0.1:9092")
    p.add_argument("--requests-topic",
                   default=os.environ.get("OPENEXEC_REQUESTS_TOPIC", "openexec.requests"),
                   help="the workers' requests topic [%(default)s]")
    p.add_argument("--action", default="echo", help="registered action [%(default)s]")
    p.add_argument("--payload", default='{"msg": "hello"}',
                   help="the payload, a JSON object [%(default)s]")
    p.add_argument("--nonce", default=None,
                   help="unique per execution, 1 to 256 bytes [a random one]")
    p.add_argument("--approval", metavar="FILE", default=None,
                   help="an approval artifact (JSON, e.g. from `openexec mint`), for "
                        "workers in clawshield mode")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the broker's acknowledgement [%(default)s]")
    return p.parse_args()


def main():
    args = parse_args()
    try:
        payload = json.loads(args.payload)
    except ValueError as e:
        sys.exit("produce_json: --payload is not JSON: %s" % e)
    if not isinstance(payload, dict):
        sys.exit("produce_json: --payload must be a JSON object")
    request = {"action": args.action, "payload": payload,
               "nonce": args.nonce or "py-%s" % uuid.uuid4()}
    if args.approval:
        with open(args.approval, encoding="utf-8") as f:
            request["approval_artifact"] = json.load(f)

    # Idempotence and acks=all: a retried send is not written twice, and
    # "delivered" means every in-sync replica has it.
    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True,
                         "acks": "all", "message.timeout.ms": int(args.timeout * 1000)})
    outcome = {}

    def delivered(err, msg):
        if err is not None:
            outcome["error"] = str(err)
        else:
            outcome["where"] = (msg.topic(), msg.partition(), msg.offset())

    producer.produce(args.requests_topic, json.dumps(request).encode("utf-8"),
                     key=request["nonce"].encode("utf-8"), on_delivery=delivered)
    producer.flush(args.timeout)
    if "where" not in outcome:
        sys.exit("produce_json: not delivered to %s within %.0f s: %s"
                 % (args.requests_topic, args.timeout, outcome.get("error", "no answer")))
    topic, partition, offset = outcome["where"]
    print(json.dumps({"sent": "json", "nonce": request["nonce"], "topic": topic,
                      "partition": partition, "offset": offset}))


if __name__ == "__main__":
    main()
