# cython: boundscheck=False, wraparound=False
"""Duplicate keys in a JSON text, which the JSON decoder takes last-wins.

``{"method": "admin.state", "method": "session.test"}`` runs ``session.test``
while a log, a proxy or an auditor reading the first key sees ``admin.state``;
a request that says two things is refused instead. The scan runs on every
frame, after the decoder has accepted it (so the text is valid JSON), and
costs a pass over its bytes: keys are compared within their own object, at
most ``MAX_KEYS`` to an object. An object with more keys, one nested deeper
than ``MAX_DEPTH`` or a key written with escapes (``"me\\u0074hod"`` is
``method``) goes to the standard library's decoder, which sees every key as
decoded.
"""
import json

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport memchr, memcmp

cdef enum:
    MAX_DEPTH = 64
    MAX_KEYS = 24          # per object; an order's params have 13 at most
    ALL_KEYS = 256         # in the objects open at once
    CLEAN = -1             # no key repeats
    UNSURE = -2            # the scan cannot tell: ask the standard decoder


cdef class _Found:
    cdef public object key
    cdef public int depth


cdef Py_ssize_t _scan(const unsigned char *p, Py_ssize_t n, _Found found):
    """Return CLEAN, UNSURE, or the offset of a repeated key (``found`` says which)."""
    cdef Py_ssize_t key_at[ALL_KEYS]
    cdef Py_ssize_t key_len[ALL_KEYS]
    cdef int first_key[MAX_DEPTH]         # index in key_at of each open level's first key
    cdef char is_object[MAX_DEPTH]
    cdef char expect_key[MAX_DEPTH]
    cdef int depth = -1, keys = 0, k
    cdef Py_ssize_t i = 0, j, length
    cdef bint escaped
    cdef unsigned char c
    cdef const unsigned char *end
    while i < n:
        c = p[i]
        if c == b'"':
            end = <const unsigned char *>memchr(p + i + 1, b'"', n - i - 1)
            j = end - p
            escaped = memchr(p + i + 1, b'\\', j - i - 1) != NULL
            if escaped:                   # the first quote may be an escaped one
                j = i + 1
                while p[j] != b'"':
                    j += 2 if p[j] == b'\\' else 1
            if depth >= 0 and expect_key[depth]:
                if escaped or keys - first_key[depth] >= MAX_KEYS or keys >= ALL_KEYS:
                    return UNSURE
                length = j - i - 1
                for k in range(first_key[depth], keys):
                    if key_len[k] == length and memcmp(p + key_at[k], p + i + 1, length) == 0:
                        found.key = p[i + 1:j].decode("utf-8")
                        found.depth = depth
                        return i
                key_at[keys] = i + 1
                key_len[keys] = length
                keys += 1
                expect_key[depth] = False
            i = j + 1
            continue
        if c == b'{' or c == b'[':
            depth += 1
            if depth == MAX_DEPTH:
                return UNSURE
            first_key[depth] = keys
            is_object[depth] = c == b'{'
            expect_key[depth] = c == b'{'
        elif c == b'}' or c == b']':
            keys = first_key[depth]
            depth -= 1
        elif c == b',' and is_object[depth]:
            expect_key[depth] = True
        i += 1
    return CLEAN


class _Object(dict):
    """An object as the standard decoder builds it here, with the first key it repeated."""
    __slots__ = ("repeated",)


def _pairs(pairs):
    obj = _Object(pairs)
    obj.repeated = None
    if len(obj) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                obj.repeated = key
                break
            seen.add(key)
    return obj


def _decode_fully(frame):
    """duplicate_key's answer from the standard decoder, which decodes every key."""
    root = json.loads(frame, object_pairs_hook=_pairs)
    pending = [root]
    while pending:
        node = pending.pop()
        if type(node) is _Object:
            if node.repeated is not None:
                return (node.repeated, node is root)
            pending.extend(node.values())
        elif type(node) is list:
            pending.extend(node)
    return None


def duplicate_key(frame):
    """The first key repeated within one object of a valid JSON text, and whether that
    object is the outermost; None when no key repeats.

    Args:
        frame: str or bytes, valid JSON (the decoder has accepted it).

    Raises:
        RecursionError: the text is nested too deeply to tell.
    """
    cdef const char *data
    cdef Py_ssize_t n
    cdef const unsigned char[:] view
    found = _Found()
    if isinstance(frame, str):
        data = PyUnicode_AsUTF8AndSize(frame, &n)
        at = _scan(<const unsigned char *>data, n, found)
    else:
        view = frame
        at = _scan(&view[0], view.shape[0], found)
    if at == CLEAN:
        return None
    if at == UNSURE:
        return _decode_fully(frame)
    return (found.key, found.depth == 0)
