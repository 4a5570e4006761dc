#!/usr/bin/env python3
"""Reference vectors for tests/engine/test_json.c, computed by Python itself.

    gen_json_vectors.py floats N SEED
        Prints N lines "<16 hex digits of the IEEE-754 bits> <repr(float)>":
        edge cases first (every power of two, every power of ten, subnormal
        and overflow edges, integers near 2^53 and 1e16, neighbours of all of
        these), then random finite values (random bit patterns, short
        decimals, small integers times powers of two).
        Check with: build/tests/test_json --float-vectors FILE

    gen_json_vectors.py docs N SEED EXPECTED_FILE
        Prints N random JSON documents, one per line (json.dumps with
        ensure_ascii=False and random key order; some with other number
        spellings and extra whitespace), and writes to EXPECTED_FILE two
        lines per document: json.dumps(doc, sort_keys=True,
        ensure_ascii=True) with separators (",", ":") and then with the
        default (", ", ": "), exactly what test_json --canon prints.
        Check with: build/tests/test_json --canon DOCS | diff - EXPECTED_FILE

Plain standard library; any python3 will do.
"""
import decimal
import json
import random
import struct
import sys


def bits_of(x):
    return struct.unpack(">Q", struct.pack(">d", x))[0]


def float_of(b):
    return struct.unpack(">d", struct.pack(">Q", b))[0]


def finite(x):
    return x == x and x not in (float("inf"), float("-inf"))


def neighbours(x):
    """x and the finite doubles just below and above it (same sign)."""
    b = bits_of(x)
    out = [x]
    for nb in (b - 1, b + 1):
        if 0 <= nb < (1 << 64):
            y = float_of(nb)
            if finite(y) and (y < 0) == (x < 0):
                out.append(y)
    return out


def float_edge_cases():
    xs = []
    for k in range(-1074, 1024):
        xs.append(2.0 ** k)
    for k in range(-323, 309):
        xs.append(float("1e%d" % k))
    specials = [
        0.0, -0.0, 0.1, 0.2, 0.3, 0.1 + 0.2, 1 / 3.0, 2 / 3.0, 1.0, 1.5, 100.0,
        123.456, 1e22, 1e23, 9007199254740992.0, 9007199254740993.0,
        float_of(1),                     # 5e-324
        float_of(2),
        float_of(0x000FFFFFFFFFFFFF),    # largest subnormal
        float_of(0x0010000000000000),    # smallest normal
        float_of(0x7FEFFFFFFFFFFFFF),    # DBL_MAX
        0.0001, 0.00001, 0.000123, 1e-05, 1e-07, 1e15, 1e16, 1e17,
        999999999999999.9, 9999999999999998.0, 1234567890123456.7,
        5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
    ]
    xs.extend(specials)
    for k in range(-60, 61):
        xs.append(float(10 ** 16 + k))
        xs.append(float(10 ** 15 + k))
        xs.append(float(2 ** 53 + k))
    # Powers of two and ten are the dangerous spots: add their neighbours.
    more = []
    for x in xs:
        if x != 0:
            more.extend(neighbours(x))
    xs.extend(more)
    xs.extend([-x for x in list(xs)])
    seen = set()
    out = []
    for x in xs:
        b = bits_of(x)
        if b not in seen and finite(x):
            seen.add(b)
            out.append(x)
    return out


def random_float(rng):
    kind = rng.randrange(5)
    while True:
        if kind <= 1:
            x = float_of(rng.getrandbits(64))
        elif kind == 2:
            nd = rng.randint(1, 17)
            digits = "".join(rng.choice("0123456789") for _ in range(nd))
            x = float("%s%se%d" % (rng.choice(["", "-"]), digits, rng.randint(-345, 310)))
        elif kind == 3:
            x = float(rng.randint(-10 ** rng.randint(1, 20), 10 ** rng.randint(1, 20)))
        else:
            x = rng.randint(1, 1 << rng.randint(1, 53)) * 2.0 ** rng.randint(-1100, 1000)
            if rng.random() < 0.5:
                x = -x
        if finite(x):
            return x


def cmd_floats(n, seed):
    rng = random.Random(seed)
    xs = float_edge_cases()[:n]
    while len(xs) < n:
        xs.append(random_float(rng))
    w = sys.stdout.write
    for x in xs:
        w("%016x %r\n" % (bits_of(x), x))


# ---------------------------------------------------------------------------
# Documents

CHAR_POOLS = [
    [chr(c) for c in range(0x20, 0x7F)],
    [chr(c) for c in range(0x00, 0x20)] + ["\x7f", '"', "\\", "/"],
    ["\u00e9", "\u00ff", "\u0100", "\u07ff", "\u0800", "\u2028", "\u2029", "\ufeff",
     "\ufffd", "\uffff", "\u4e2d", "\u00a0", "\u0085"],
    ["\U00010000", "\U0001f600", "\U0010ffff", "\U0001d11e", "\U00020000"],
]


def random_char(rng):
    pool = rng.choice(CHAR_POOLS)
    if rng.random() < 0.2:
        # Any code point except the surrogates.
        while True:
            c = rng.randrange(0x110000)
            if not 0xD800 <= c <= 0xDFFF:
                return chr(c)
    return rng.choice(pool)


def random_string(rng, maxlen=12):
    r = rng.random()
    if r < 0.02:
        n = rng.randint(500, 1500)  # longer than the serializer's staging buffer
    else:
        n = rng.randint(0, maxlen)
    if rng.random() < 0.4:
        return "".join(rng.choice("abcxyz_09") for _ in range(n))
    return "".join(random_char(rng) for _ in range(n))


KEY_STEMS = ["", "a", "ab", "a\u0000", "b", "A", "z", "\u00e9", "e", "\uffff",
             "\U0001f600", "\ud7ff", "\ue000", "key", "key2", "k\u0000ey", "\x7f"]


def random_key(rng):
    if rng.random() < 0.5:
        return rng.choice(KEY_STEMS) + (rng.choice(KEY_STEMS) if rng.random() < 0.3 else "")
    return random_string(rng, 6)


def random_int(rng):
    r = rng.random()
    if r < 0.4:
        return rng.randint(-1000, 1000)
    if r < 0.6:
        return rng.choice([0, 2 ** 63 - 1, -2 ** 63, 2 ** 63, -2 ** 63 - 1, 2 ** 64,
                           10 ** 16, 2 ** 53 + 1, -(2 ** 53) - 1])
    if r < 0.97:
        v = rng.randint(0, 10 ** rng.randint(1, 40))
    else:
        v = rng.randint(0, 10 ** rng.randint(300, 600))
    return -v if rng.random() < 0.5 else v


def random_doc_float(rng):
    r = rng.random()
    if r < 0.1:
        return rng.choice([0.0, -0.0, 1.0, 0.1, 1e16, 1e-07, 5e-324, 1e22, 100.0,
                           1.7976931348623157e308, 2.0 ** -1017])
    return random_float(rng)


def random_value(rng, depth):
    r = rng.random()
    if depth < 6 and r < 0.25:
        n = rng.randint(0, 6)
        keys = []
        seen = set()
        for _ in range(n):
            k = random_key(rng)
            if k not in seen:
                seen.add(k)
                keys.append(k)
        rng.shuffle(keys)
        return {k: random_value(rng, depth + 1) for k in keys}
    if depth < 6 and r < 0.45:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    r = rng.random()
    if r < 0.35:
        return random_string(rng)
    if r < 0.6:
        return random_int(rng)
    if r < 0.85:
        return random_doc_float(rng)
    return rng.choice([True, False, None])


def respell_float(rng, x):
    """Another JSON spelling of exactly the same decimal value as repr(x),
    or the exact binary value written out in full."""
    if rng.random() < 0.15:
        s = format(decimal.Decimal(x), "f") if abs(x) >= 1e-30 or x == 0 else str(decimal.Decimal(x))
        if "." not in s and "e" not in s.lower():
            s += ".0"
        return s.replace("E", rng.choice(["e", "E"]))
    sign, digits, exp = decimal.Decimal(repr(x)).as_tuple()
    ds = "".join(map(str, digits)) + "0" * rng.randint(0, 3)
    exp -= len(ds) - len(digits)
    cut = rng.randint(1, len(ds))  # digits before the point
    if x == 0:
        cut = 1  # "0", "0.00": JSON allows no leading zeros
    mant = ds[:cut] + ("." + ds[cut:] if cut < len(ds) else "")
    e = exp + len(ds) - cut
    out = ("-" if sign else "") + mant
    if "." not in mant and e == 0:
        e_txt = rng.choice(["e", "E"]) + rng.choice(["", "+", "-"]) + "0" * rng.randint(1, 3)
    elif e != 0 or rng.random() < 0.5:
        e_txt = rng.choice(["e", "E"]) + ("-" if e < 0 else rng.choice(["", "+"]))
        e_txt += "0" * rng.randint(0, 2) + str(abs(e))
    else:
        e_txt = ""
    return out + e_txt


def ws(rng):
    if rng.random() < 0.7:
        return ""
    return "".join(rng.choice(" \t") for _ in range(rng.randint(1, 3)))


def emit(rng, v):
    """Our own writer: json.dumps strings, other number spellings, spaces."""
    if isinstance(v, dict):
        if not v:
            return "{" + ws(rng) + "}"
        parts = [ws(rng) + json.dumps(k, ensure_ascii=False) + ws(rng) + ":" + ws(rng)
                 + emit(rng, x) + ws(rng) for k, x in v.items()]
        return "{" + ",".join(parts) + "}"
    if isinstance(v, list):
        if not v:
            return "[" + ws(rng) + "]"
        return "[" + ",".join(ws(rng) + emit(rng, x) + ws(rng) for x in v) + "]"
    if isinstance(v, float):
        return respell_float(rng, v)
    if v is True or v is False or v is None:
        return json.dumps(v)
    if isinstance(v, int) and v == 0 and rng.random() < 0.3:
        return "-0"
    return json.dumps(v, ensure_ascii=False)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def reject_constant(name):
    raise ValueError("non-finite number " + name)


def cmd_docs(n, seed, expected_path):
    rng = random.Random(seed)
    out = sys.stdout.buffer
    with open(expected_path, "w", encoding="ascii", newline="\n") as exp:
        for _ in range(n):
            v = random_value(rng, 0)
            if rng.random() < 0.3:
                line = ws(rng) + emit(rng, v) + ws(rng)
            else:
                seps = rng.choice([(", ", ": "), (",", ":")])
                line = json.dumps(v, ensure_ascii=False, separators=seps)
            assert "\n" not in line and "\r" not in line
            # Expected output from what Python reads back from the line
            # itself, after checking the line suits our stricter parser.
            back = json.loads(line, object_pairs_hook=no_duplicates,
                              parse_constant=reject_constant)
            line.encode("utf-8")  # no lone surrogates
            exp.write(json.dumps(back, sort_keys=True, ensure_ascii=True,
                                 separators=(",", ":")) + "\n")
            exp.write(json.dumps(back, sort_keys=True, ensure_ascii=True) + "\n")
            out.write(line.encode("utf-8") + b"\n")


def main(argv):
    if len(argv) >= 4 and argv[1] == "floats":
        cmd_floats(int(argv[2]), int(argv[3]))
    elif len(argv) >= 5 and argv[1] == "docs":
        cmd_docs(int(argv[2]), int(argv[3]), argv[4])
    else:
        sys.stderr.write("usage: %s floats N SEED | docs N SEED EXPECTED_FILE\n" % argv[0])
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
