# cython: boundscheck=False, wraparound=False
"""Duplicate keys in a JSON text, which the JSON decoder takes last-wins.

``{"method": "admin.state", "method": "session.test"}`` runs ``session.test``
while a log, a proxy or an auditor reading the first key sees ``admin.state``;
a request that says two things is refused instead. The scan runs on every
frame, after the decoder has accepted it (so the text is valid JSON), and
costs one pass over its bytes whatever the frame holds: keys are compared
within their own object, as bytes (a key written with escapes, ``"me\\u0074hod"``,
is decoded first, alone), the first ``SMALL`` of an object one by one and the
rest of a bigger object in a set. No request nests deeper than a few levels;
a text nested deeper than ``MAX_DEPTH`` is refused.
"""
import json

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport memchr, memcmp

cdef enum:
    MAX_DEPTH = 64
    SMALL = 24             # keys of an object compared one by one; an order has 13 at most
    ALL_KEYS = 1536        # MAX_DEPTH x SMALL: the most the open objects hold one by one


cdef class _Found:
    cdef object first               # the first key seen twice in one object (bytes)
    cdef bint id_repeats            # the outermost object's "id" is one of them
    cdef list keep                  # escaped keys decoded, kept alive while compared
    cdef dict sets                  # depth -> the keys of a big object open there


cdef void _repeated(_Found found, const unsigned char *key, Py_ssize_t length, int depth):
    if found.first is None:
        found.first = key[:length]
    if depth == 0 and length == 2 and key[0] == b'i' and key[1] == b'd':
        found.id_repeats = True


cdef int _scan(const unsigned char *p, Py_ssize_t n, _Found found) except -1:
    cdef const unsigned char *key_at[ALL_KEYS]
    cdef Py_ssize_t key_len[ALL_KEYS]
    cdef int first_key[MAX_DEPTH]         # index in key_at of each open object's first key
    cdef char is_object[MAX_DEPTH]
    cdef char expect_key[MAX_DEPTH]
    cdef int depth = -1, keys = 0, k
    cdef Py_ssize_t i = 0, j, length
    cdef bint escaped, seen
    cdef unsigned char c
    cdef const unsigned char *end
    cdef const unsigned char *key
    cdef char is_big[MAX_DEPTH]           # the object open at that depth keeps its keys in a set
    cdef set big
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
                expect_key[depth] = False
                key, length = p + i + 1, j - i - 1
                if escaped:               # compared as what it decodes to
                    decoded = json.loads(p[i:j + 1]).encode("utf-8", "surrogatepass")
                    if found.keep is None:
                        found.keep = []
                    found.keep.append(decoded)
                    key, length = <const unsigned char *>PyBytes_AS_STRING(decoded), \
                        PyBytes_GET_SIZE(decoded)
                if is_big[depth]:
                    big = found.sets[depth]
                    name = key[:length]
                    if name in big:
                        _repeated(found, key, length, depth)
                    else:
                        big.add(name)
                else:
                    seen = False
                    for k in range(first_key[depth], keys):
                        if key_len[k] == length and memcmp(key_at[k], key, length) == 0:
                            seen = True
                            break
                    if seen:
                        _repeated(found, key, length, depth)
                    elif keys - first_key[depth] < SMALL:
                        key_at[keys] = key
                        key_len[keys] = length
                        keys += 1
                    else:                 # a big object: its keys go in a set
                        if found.sets is None:
                            found.sets = {}
                        big = {key_at[k][:key_len[k]] for k in range(first_key[depth], keys)}
                        big.add(key[:length])
                        found.sets[depth] = big
                        is_big[depth] = True
            i = j + 1
            continue
        if c == b'{' or c == b'[':
            depth += 1
            if depth == MAX_DEPTH:
                raise RecursionError("nested too deeply")
            first_key[depth] = keys
            is_object[depth] = c == b'{'
            expect_key[depth] = c == b'{'
            is_big[depth] = False
        elif c == b'}' or c == b']':
            keys = first_key[depth]
            if is_big[depth]:
                del found.sets[depth]
            depth -= 1
        elif c == b',' and is_object[depth]:
            expect_key[depth] = True
        i += 1
    return 0


def duplicate_key(frame):
    """The first key repeated within one object of a valid JSON text, and whether the
    outermost object's ``id`` repeats (then no id can be echoed); None when no key repeats.

    Args:
        frame: str or bytes, valid JSON (the decoder has accepted it).

    Raises:
        RecursionError: the text nests deeper than MAX_DEPTH.
    """
    cdef const char *data
    cdef Py_ssize_t n
    cdef const unsigned char[:] view
    found = _Found()
    if isinstance(frame, str):
        data = PyUnicode_AsUTF8AndSize(frame, &n)
        _scan(<const unsigned char *>data, n, found)
    else:
        view = frame
        _scan(&view[0], view.shape[0], found)
    if found.first is None:
        return None
    return (found.first.decode("utf-8", "backslashreplace"), found.id_repeats)
