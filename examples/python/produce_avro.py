#!/usr/bin/env python3
"""Publishes one OpenExec execution request in Avro to the requests topic.

    python3 produce_avro.py --brokers 127.0.0.1:9092 --action echo \
        --payload '{"msg": "avro"}' --nonce avro-1
    python3 produce_avro.py --brokers 127.0.0.1:9092 --confluent-schema-id 1 ...

The record follows schemas/execution_request.avsc (the payload travels as
JSON text). By default it is framed as Avro single-object encoding (C3 01 +
the schema's CRC-64-AVRO fingerprint); with --confluent-schema-id N as a
Confluent Schema Registry message (00 + N, 4 bytes big-endian), which a
worker reads only when started with the same --confluent-schema-id N. The
key is the nonce. The program waits until the broker has acknowledged the
message (at most --timeout seconds), prints one JSON line saying where it
landed, and exits 0; it exits 1 when the message could not be delivered.

Needs confluent-kafka and avro (Debian: python3-confluent-kafka,
python3-avro).
"""

import argparse
import json
import os
import sys
import uuid

from confluent_kafka import Producer

from avro_framing import REQUEST_SCHEMA, Schema


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
    p.add_argument("--confluent-schema-id", type=int, default=None, metavar="N",
                   help="frame for a Schema Registry: the id under which it holds "
                        "execution_request.avsc [single-object encoding]")
    p.add_argument("--schema", default=REQUEST_SCHEMA, help="the request schema [%(default)s]")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the broker's acknowledgement [%(default)s]")
    return p.parse_args()


def main():
    args = parse_args()
    try:
        payload = json.loads(args.payload)
    except ValueError as e:
        sys.exit("produce_avro: --payload is not JSON: %s" % e)
    if not isinstance(payload, dict):
        sys.exit("produce_avro: --payload must be a JSON object")
    nonce = args.nonce or "py-%s" % uuid.uuid4()
    schema = Schema(args.schema)
    # No approval artifact here; see produce_json.py --approval for one in
    # JSON. In Avro it is the ApprovalArtifact record of the schema.
    datum = {"action": args.action, "payload": json.dumps(payload), "nonce": nonce,
             "approval_artifact": None}
    if args.confluent_schema_id is None:
        value, framing = schema.single_object(datum), "avro-single-object"
    else:
        if not 0 <= args.confluent_schema_id <= 0x7FFFFFFF:
            sys.exit("produce_avro: --confluent-schema-id must be 0 to 2147483647")
        value, framing = schema.confluent(args.confluent_schema_id, datum), "avro-confluent"

    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True,
                         "acks": "all", "message.timeout.ms": int(args.timeout * 1000)})
    outcome = {}

    def delivered(err, msg):
        if err is not None:
            outcome["error"] = str(err)
        else:
            outcome["where"] = (msg.topic(), msg.partition(), msg.offset())

    producer.produce(args.requests_topic, value, key=nonce.encode("utf-8"),
                     on_delivery=delivered)
    producer.flush(args.timeout)
    if "where" not in outcome:
        sys.exit("produce_avro: not delivered to %s within %.0f s: %s"
                 % (args.requests_topic, args.timeout, outcome.get("error", "no answer")))
    topic, partition, offset = outcome["where"]
    print(json.dumps({"sent": framing, "nonce": nonce, "topic": topic,
                      "partition": partition, "offset": offset}))


if __name__ == "__main__":
    main()
