"""Avro framing of OpenExec messages, with python3-avro and the schemas of
the repository's schemas/ directory (docs/protocol.md, sections 2.3, 2.4
and 6.2).

- Single-object encoding: C3 01, the 8-byte little-endian CRC-64-AVRO
  fingerprint of the schema's Parsing Canonical Form, the Avro binary body.
- Confluent framing: 00, the 4-byte big-endian schema id, the body.

The fingerprint is computed here from the schema file, so a reader built on
this module follows the schema it is given.
"""

import io
import os
import struct

import avro.io
import avro.schema

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas")
REQUEST_SCHEMA = os.path.join(SCHEMAS, "execution_request.avsc")
RECEIPT_SCHEMA = os.path.join(SCHEMAS, "receipt.avsc")

# CRC-64-AVRO (the Avro specification's "Schema Fingerprints").
_EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data):
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


class Schema:
    """A parsed .avsc file and its fingerprint."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.schema = avro.schema.parse(f.read())
        self.fingerprint = crc64_avro(self.schema.canonical_form.encode("utf-8"))
        self._writer = avro.io.DatumWriter(self.schema)
        self._reader = avro.io.DatumReader(self.schema)

    def body(self, datum):
        """The Avro binary encoding of datum (a dict), without any header."""
        out = io.BytesIO()
        self._writer.write(datum, avro.io.BinaryEncoder(out))
        return out.getvalue()

    def single_object(self, datum):
        return b"\xc3\x01" + struct.pack("<Q", self.fingerprint) + self.body(datum)

    def confluent(self, schema_id, datum):
        return b"\x00" + struct.pack(">I", schema_id) + self.body(datum)

    def read_single_object(self, value):
        """A single-object message -> dict; ValueError when the header, the
        fingerprint or the body does not match this schema."""
        if len(value) < 10 or value[:2] != b"\xc3\x01":
            raise ValueError("not Avro single-object encoding")
        (fp,) = struct.unpack("<Q", value[2:10])
        if fp != self.fingerprint:
            raise ValueError("schema fingerprint %016x, expected %016x" % (fp, self.fingerprint))
        body = io.BytesIO(value[10:])
        datum = self._reader.read(avro.io.BinaryDecoder(body))
        if body.tell() != len(value) - 10:
            raise ValueError("%d bytes after the record" % (len(value) - 10 - body.tell()))
        return datum
