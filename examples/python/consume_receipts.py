#!/usr/bin/env python3
"""Reads OpenExec receipts and hands each execution on once, de-duplicated
by nonce.

    python3 consume_receipts.py --brokers 127.0.0.1:9092 --nonce order-1001

Receipts are delivered at least once: a worker that crashes after
publishing a receipt but before committing its offsets reads the request
again and publishes its receipt again (answered from the ledger, status
"replayed"), and a request sent twice under one nonce gets two receipts.
Both carry the same id, result and receipt hash, so a consumer keeps the
nonces it has handled and drops a second execution receipt for one of them.
Rejections are passed on each time: a rejection does not use up the nonce,
and each rejected attempt has a receipt of its own.

The topic is read from the beginning, without a consumer group. Each
receipt handed on is printed as one JSON line (the result decoded from its
JSON text); each dropped duplicate is reported on stderr, and a summary
line ends stderr. With --nonce (repeatable), the program reads until every
one of them has a receipt and the topic's end is reached, and exits 1 if
that takes longer than --timeout seconds or if the last receipt of one of
them is a rejection. Without --nonce it reads to the topic's current end.
Receipts in Avro (the workers' default) and JSON are both understood.

Needs confluent-kafka and avro (Debian: python3-confluent-kafka,
python3-avro).
"""

import argparse
import json
import os
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from avro_framing import RECEIPT_SCHEMA, Schema


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokers", required=True, help="bootstrap.servers, e.g. 127.0.0.1:9092")
    p.add_argument("--receipts-topic",
                   default=os.environ.get("OPENEXEC_RECEIPTS_TOPIC", "openexec.receipts"),
                   help="the workers' receipts topic [%(default)s]")
    p.add_argument("--nonce", action="append", default=[],
                   help="wait for this nonce's receipt (repeatable)")
    p.add_argument("--schema", default=RECEIPT_SCHEMA, help="the receipt schema [%(default)s]")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for everything [%(default)s]")
    return p.parse_args()


def decode(value, schema):
    """A receipt message's value -> dict."""
    if value[:1] == b"{":
        return json.loads(value.decode("utf-8"))
    return schema.read_single_object(value)


class Deduplicator:
    """Remembers the nonces whose execution was handed on. An application
    keeps this set durably, together with the effect of handling the
    receipt (for instance a table with the nonce as its primary key), so
    that duplicates read after a restart are dropped too."""

    def __init__(self):
        self.executed = {}  # nonce -> execution id
        self.duplicates = 0

    def first_time(self, receipt):
        if receipt["status"] not in ("executed", "replayed"):
            return True  # a rejection: its own attempt, the nonce stays free
        nonce = receipt["nonce"]
        if nonce in self.executed:
            if self.executed[nonce] != receipt["id"]:  # never, by the protocol
                raise ValueError("nonce %r: two execution ids" % nonce)
            self.duplicates += 1
            return False
        self.executed[nonce] = receipt["id"]
        return True


def main():
    args = parse_args()
    schema = Schema(args.schema)
    consumer = Consumer({"bootstrap.servers": args.brokers,
                         # Needed by the client, but nothing joins or commits:
                         # partitions are assigned below.
                         "group.id": "openexec-receipts-example",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    deadline = time.monotonic() + args.timeout
    try:
        md = consumer.list_topics(args.receipts_topic, timeout=args.timeout)
        topic = md.topics.get(args.receipts_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            sys.exit("consume_receipts: topic %s: %s" % (args.receipts_topic,
                     topic.error if topic is not None else "not found"))
        partitions = sorted(topic.partitions)
        consumer.assign([TopicPartition(args.receipts_topic, p, OFFSET_BEGINNING)
                         for p in partitions])
        wanted = set(args.nonce)
        last = {}             # wanted nonce -> its last receipt
        at_end = set()        # partitions read to their end since their last message
        dedup = Deduplicator()
        handed_on = 0
        while not (wanted <= set(last) and at_end == set(partitions)):
            if time.monotonic() > deadline:
                missing = sorted(wanted - set(last))
                sys.exit("consume_receipts: after %.0f s, no receipt for %s"
                         % (args.timeout, ", ".join(missing)) if missing else
                         "consume_receipts: the end of %s not reached within %.0f s"
                         % (args.receipts_topic, args.timeout))
            for msg in consumer.consume(500, 0.2):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    sys.exit("consume_receipts: %s" % msg.error())
                at_end.discard(msg.partition())
                try:
                    receipt = decode(msg.value(), schema)
                except ValueError as e:
                    sys.exit("consume_receipts: partition %d offset %d: not a receipt: %s"
                             % (msg.partition(), msg.offset(), e))
                if receipt["nonce"] in wanted:
                    last[receipt["nonce"]] = receipt
                elif wanted:
                    continue  # someone else's
                if not dedup.first_time(receipt):
                    print("duplicate receipt for nonce %s (%s, partition %d, offset %d): dropped"
                          % (receipt["nonce"], receipt["status"], msg.partition(), msg.offset()),
                          file=sys.stderr)
                    continue
                handed_on += 1
                shown = {k: receipt.get(k) for k in ("nonce", "status", "action", "id",
                                                     "receipt", "approval_id", "error_code",
                                                     "detail")}
                # The result travels as JSON text, result_json (the text the
                # receipt hash covers); receipts of the schema's first
                # version carry it as result only.
                text = receipt.get("result_json", receipt.get("result"))
                shown["result"] = json.loads(text) if isinstance(text, str) else text
                print(json.dumps(shown), flush=True)
    finally:
        consumer.close()
    print("consume_receipts: %d receipt(s) handed on, %d duplicate(s) dropped"
          % (handed_on, dedup.duplicates), file=sys.stderr)
    rejected = sorted(n for n in wanted if last[n]["status"] == "rejected")
    if rejected:
        sys.exit("consume_receipts: rejected: %s" % ", ".join(
            "%s (%s: %s)" % (n, last[n]["error_code"], last[n]["detail"]) for n in rejected))


if __name__ == "__main__":
    main()
