"""Hypothesis strategies for the protocol fuzzer (test_fuzz.py): frames a hostile or broken
client could send.

Requests are built from each method's params Struct as msgspec describes it
(msgspec.inspect): every field gets its edge values (the bounds and one past
them, zero, 2^53, 2^63, 2^64, ...), values of the wrong type, realistic values
(the listed symbols, prices on and off the tick, order ids that exist), and
strings of every shape (unicode, control characters, a final newline, one
character past the maximum). Fields are dropped and unknown ones added. Around
them: valid and broken envelopes (truncated, a character changed, keys
repeated, nested deep, batches, huge ids, bytes that are not UTF-8).
"""
from __future__ import annotations

import json
import msgspec.inspect as mi
from hypothesis import strategies as st

from gateway.core.methods import METHODS

SYMBOLS = ["H100-2027-03", "H100-2027-04", "H100-2027-Q2", "H100-2027-Q3", "H200-2027-01",
           "H100-2028", "H100-2030-01", "h100-2027-03", "H100-2027-13", "", " ", "H100"]
PRICES = ["2.000", "2.001", "1.999", "2.310", "2.311", "1.890", "2", "2.0005", "0", "0.000",
          "-2", "1e3", "9" * 39, ".5", "2.", " 2.000", "\uff12.000", "NaN", "Infinity", "0x10"]
MONEY = ["1", "100.5", "0", "0.000001", "0.0000001", "-1", "999999999999.999999",
         "1000000000000", "1e6", "1,000", "", "  7"]
DECIMALS = ["0.5", "1", "0", "-0.1", "1.5", "2", "0.999999", "1e2", "abc", "10000000000"]
CLASSES = ["H100", "H200", "B200", "h100", "", "X" * 12]
CHANNELS = ["book.H100-2027-03", "trades.H100-2027-03", "ticker.H100-2027-Q2", "orders",
            "fills", "admin", "index.H100", "curve.H100", "instruments", "book.NOPE",
            "index.", "ticker.*", "orders.x"]
DATES = ["2026-11-25", "2026-11-24", "2027-01", "2027-02-30", "0001-01-01", "9999-12-31",
         "2026-11-25T00:00:00"]
#: Field name -> realistic values, beside the edge values of the field's type.
POOLS = {"symbol": SYMBOLS, "symbols": SYMBOLS, "price": PRICES, "stop_price": PRICES,
         "amount": MONEY, "gpu_class": CLASSES, "channels": CHANNELS, "opex": MONEY,
         "principal": MONEY, "rate": DECIMALS, "utilisation": DECIMALS, "basis": DECIMALS,
         "hedge_ratio": DECIMALS, "vol": DECIMALS, "dscr_p50": DECIMALS, "dscr_p99": DECIMALS,
         "account": ["trader-1", "trader-2", "maker-1", "admin", "nobody", ""],
         "start": ["2027-01", "2027-04", "2027-13", "2026-11", "2040-01", "27-01"], "from": DATES,
         "to": DATES, "date": DATES, "interval": ["1m", "1h", "1d", "5m", ""],
         "reason": ["maintenance", "", "x" * 300]}
INTS = [0, 1, -1, 2, 3, 10, 99, 100, 101, 1000, 1001, 5000, 5001, 10_000, 10_001, 2**31,
        2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -2**63, -2**63 - 1, 10**30]
ORDER_IDS = st.integers(1, 40)
SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=8)
WILD = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.text(max_size=4), c, max_size=3), max_leaves=8)
TEXT = st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["", " ", "\n", "a\n", "\x00", "\u202e", "\U0001F600", "'; drop table", "%s%n"])


#: The first values of each pool are valid ones; a clean request draws only from those.
CLEAN = {"symbol": 6, "symbols": 6, "price": 6, "stop_price": 6, "amount": 3,
         "gpu_class": 2, "channels": 9, "opex": 3, "principal": 3, "rate": 6,
         "utilisation": 6, "basis": 6, "hedge_ratio": 6, "vol": 6, "dscr_p50": 6,
         "dscr_p99": 6, "account": 4, "start": 2, "from": 2, "to": 2, "date": 2,
         "interval": 3, "reason": 2}
CLEAN_INTS = {"qty": st.integers(1, 12), "display_qty": st.integers(1, 3),
              "limit": st.integers(1, 50), "gpus": st.integers(1, 5000),
              "months": st.integers(1, 24), "level": st.integers(0, 9),
              "tenor_years": st.integers(1, 10)}


CLEAN_LITERALS = {"type": ["limit"] * 4 + ["market", "stop_limit", "stop_market"],
                  "tif": ["gtc"] * 3 + ["ioc", "fok", "gtd"]}
CLEAN_LISTS = {"symbols": [["H100-2027-03", "H100-2027-04", "H100-2027-05"],
                           ["H100-2027-Q2", "H100-2027-Q3"], ["H200-2027-01", "H200-2027-02"]]}
ALWAYS = {"price"}          # a clean request has these even where they are optional


def _string(t: mi.StrType, name: str, level: int):
    if level == CLEAN_LEVEL and name in POOLS:
        return st.sampled_from(POOLS[name][:CLEAN[name]])
    if level == CLEAN_LEVEL and t.pattern is not None:
        return st.from_regex(t.pattern, fullmatch=True)
    options = [TEXT]
    if name in POOLS:
        options.append(st.sampled_from(POOLS[name]))
    if t.pattern is not None:
        options.append(st.from_regex(t.pattern, fullmatch=True))
    for n in (t.max_length, t.min_length):
        if n is not None:
            options.append(st.sampled_from(["x" * n, "x" * (n + 1), "x" * max(n - 1, 0)]))
    return st.one_of(options)


def _int(t: mi.IntType, name: str, level: int):
    ids = name.endswith("order_id") or name in ("after", "before")
    if level == CLEAN_LEVEL:
        if ids:
            return ORDER_IDS
        return CLEAN_INTS.get(name, st.integers(max(t.ge or 0, 0), min(t.le or 100, 100)))
    edges = set(INTS)
    for bound in (t.ge, t.le, t.gt, t.lt):
        if bound is not None:
            edges |= {bound - 1, bound, bound + 1}
    typed = st.sampled_from(sorted(edges)) | st.integers(-5, 120)
    return ORDER_IDS | typed if ids else typed


CLEAN_LEVEL, EDGY, WILD_LEVEL = 0, 1, 2


def value(t, name: str, level: int):
    """Values for a msgspec type at a level: clean ones (valid, or near it), edge values of
    the type, or (wild) sometimes a value of any other type."""
    kind = type(t)
    if kind is mi.IntType:
        typed = _int(t, name, level)
    elif kind is mi.StrType:
        typed = _string(t, name, level)
    elif kind is mi.BoolType:
        typed = st.booleans()
    elif kind is mi.NoneType:
        typed = st.none()
    elif kind is mi.LiteralType and level == CLEAN_LEVEL and name in CLEAN_LITERALS:
        typed = st.sampled_from(CLEAN_LITERALS[name])
    elif kind is mi.ListType and level == CLEAN_LEVEL and name in CLEAN_LISTS:
        typed = st.sampled_from(CLEAN_LISTS[name])
    elif kind is mi.LiteralType:
        typed = st.sampled_from(list(t.values) + ([] if level == CLEAN_LEVEL else
                                                  [str(t.values[0]).upper(), "other"]))
    elif kind is mi.UnionType:
        typed = st.one_of([value(u, name, level) for u in t.types])
    elif kind is mi.ListType:
        low = t.min_length or 0
        high = min(t.max_length if t.max_length is not None else 5, 8)
        typed = st.lists(value(t.item_type, name, level), min_size=max(low, 1 - level),
                         max_size=high)
        if level != CLEAN_LEVEL and t.max_length is not None and t.max_length < 300:
            typed |= st.lists(value(t.item_type, name, level), min_size=t.max_length + 1,
                              max_size=t.max_length + 1)
    elif kind is mi.StructType:
        typed = params(t, level)
    else:
        typed = WILD
    return st.one_of(typed, WILD) if level == WILD_LEVEL else typed


def params(info: mi.StructType, level: int):
    """A params object for a Struct: each optional field present or not; when wild, now and
    then a required one missing or an unknown one added."""
    fields = {f.encode_name: f for f in info.fields}

    @st.composite
    def build(draw):
        out = {}
        for name, f in fields.items():
            if level == WILD_LEVEL and draw(st.integers(0, 19)) == 0:
                continue                                  # drop it, required or not
            if f.required or level == CLEAN_LEVEL and name in ALWAYS or draw(
                    st.integers(0, 3 if level == CLEAN_LEVEL else 1)) == 0:
                out[name] = draw(value(f.type, name, level))
        if level == WILD_LEVEL and draw(st.integers(0, 9)) == 0:
            out[draw(st.sampled_from(["extra", "liquidation", "account_id", "Symbol"]))] = 1
        return out
    return build()


IDS = st.integers(-2**63, 2**63 - 1) | st.text(max_size=64)


@st.composite
def requests(draw):
    """(frame, id, method): a readable envelope for a method, with params clean, edgy or
    wild."""
    name = draw(st.sampled_from(sorted(METHODS)))
    level = draw(st.sampled_from([CLEAN_LEVEL, CLEAN_LEVEL, EDGY, WILD_LEVEL]))
    p = draw(params(mi.type_info(METHODS[name].params), level))
    request_id = draw(IDS)
    envelope = {"jsonrpc": "2.0", "id": request_id, "method": name}
    if p or draw(st.booleans()):
        envelope["params"] = p
    text = json.dumps(envelope, ensure_ascii=draw(st.booleans()), separators=draw(
        st.sampled_from([(",", ":"), (", ", ": ")])))
    return text, request_id, name


@st.composite
def broken(draw):
    """A frame that is not a readable request, or only barely."""
    text, request_id, _ = draw(requests())
    how = draw(st.sampled_from(["truncate", "change", "repeat", "nest", "batch", "id",
                                "version", "bytes", "not-utf8", "not-utf8-inside", "scalar",
                                "wild"]))
    if how == "truncate":
        return text[:draw(st.integers(0, max(len(text) - 1, 0)))]
    if how == "change":
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.sampled_from(list('{}[]",:\\0 x\u00e9'))) + text[at + 1:]
    if how == "repeat":
        return text.replace('"method"', '"method": "session.test", "method"', 1)
    if how == "nest":
        depth = draw(st.sampled_from([10, 63, 64, 65, 200, 5000]))
        return text[:-1] + ', "params": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    if how == "batch":
        return "[" + text + "]"
    if how == "id":
        return text.replace(json.dumps(request_id), draw(st.sampled_from(
            ["9" * 400, "1.5", "true", "null", "[1]", '{"a": 1}', "-0", "1e3"])), 1)
    if how == "version":
        return text.replace('"2.0"', draw(st.sampled_from(['"1.0"', "2.0", '"2"', "null"])), 1)
    if how == "bytes":
        return text.encode()
    if how == "not-utf8":
        return text.encode()[:-1] + b"\xff\xfe" + text.encode()[-1:]
    if how == "not-utf8-inside":            # in a string, a key, a repeated key: still JSON
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88"]))
        return draw(st.sampled_from([
            text.encode().replace(b'": "', b'": "' + bad, 1),
            text.encode().replace(b'"method"', b'"params": {"' + bad + b'": 1, "' + bad
                                  + b'": 2}, "method"', 1),
            text.encode().replace(b'"params": {', b'"params": {"k' + bad + b'": 0, ', 1)]))
    if how == "scalar":
        return json.dumps(draw(SCALARS))
    return json.dumps(draw(WILD))
