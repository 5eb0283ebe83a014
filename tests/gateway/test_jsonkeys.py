"""The repeated-key scan (gateway.core.jsonkeys) against the standard library's decoder,
which sees every object's pairs, on generated JSON: objects built from lists of pairs so
that keys repeat, keys written with and without escapes, nesting past the scan's own
depth, objects past its key limit, text and bytes."""
from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from gateway.core.jsonkeys import duplicate_key

KEYS = st.sampled_from(["a", "b", "id", "method", "é", 'q"', "x\\y", "k" * 40]) | st.text(
    max_size=3)
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=5)


def _objects(children):
    return st.lists(st.tuples(KEYS, children), max_size=30).map(lambda pairs: ("obj", pairs))


VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4) | _objects(
    children), max_leaves=60)


def render(value, ascii_only: bool, spaced: bool) -> str:
    """JSON text of a generated value; an object's pairs keep their repeats."""
    sep = ", " if spaced else ","
    if isinstance(value, tuple):
        return "{" + sep.join(json.dumps(k, ensure_ascii=ascii_only) + ":" + render(
            v, ascii_only, spaced) for k, v in value[1]) + "}"
    if isinstance(value, list):
        return "[" + sep.join(render(v, ascii_only, spaced) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def repeats(value, outermost=True):
    """Every (key, outermost) that repeats within one object of the value."""
    found = set()
    if isinstance(value, tuple):
        keys = [k for k, _ in value[1]]
        found |= {(k, outermost) for k in keys if keys.count(k) > 1}
        for _, v in value[1]:
            found |= repeats(v, False)
    elif isinstance(value, list):
        for v in value:
            found |= repeats(v, False)
    return found


@settings(max_examples=400, deadline=None)
@given(VALUES, st.booleans(), st.booleans(), st.integers(0, 70))
def test_the_scan_finds_a_repeated_key_exactly_when_there_is_one(value, ascii_only, spaced,
                                                                 wrap):
    """``wrap`` puts the value inside that many objects, past the scan's depth of 64."""
    text = render(value, ascii_only, spaced)
    for _ in range(wrap):
        text = '{"w": ' + text + "}"
    expected = {(k, outermost and wrap == 0) for k, outermost in repeats(value)}
    for frame in (text, text.encode()):
        found = duplicate_key(frame)
        assert (found is None) == (not expected)
        assert found is None or found in expected


def test_a_key_repeated_with_an_escape_is_the_same_key():
    assert duplicate_key('{"method": 1, "me\\u0074hod": 2}') == ("method", True)
    assert duplicate_key(b'{"a": {"\\u00e9": 1, "\\u00c3\\u00a9": 2}}') is None
    assert duplicate_key('{"a": "\\"", "b": "\\\\", "a": 3}') == ("a", True)
