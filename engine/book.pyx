# engine/book.pyx: one price-time priority limit order book, in C structures.
"""The limit order book of one instrument.

How orders and levels are stored, and why (DESIGN.md, "What a fast book looks
like here"): about four fifths of a command's cost used to be Python objects
and calls, so nothing here is a Python object per resting order.

- Orders are ``Order`` C structs in one pool that grows by ``realloc``; freed
  slots go on a free list, so a steady book allocates nothing.
- Each price level keeps an intrusive doubly-linked FIFO (slot indices, not
  pointers, so the pool can move) with the level's visible and hidden totals
  and order count: add at the tail, cancel anywhere in O(1).
- Levels are a flat array per side indexed by ``price - base``. Prices are held
  inside the price band, so the array is small; when a price falls outside it,
  both arrays are re-centred (one copy) to cover it.
- An open-addressing hash (linear probing, backward-shift deletion) maps the
  order id to its slot; no Python dict, no boxed ints.
- The best price of each side is an index moved only when its level empties; a
  bitmap of non-empty levels finds the next one 64 levels per step, so one stale
  order far from the touch costs no walk through the empty levels between.

The Python-facing methods take and return plain ints, and return as little as
they can: ``match`` gives one tuple per fill or self-trade action, and
``changes`` gives the levels touched since the last call, so the engine can
publish book deltas without diffing.

Matching rules that live here because they decide queue order: price-time
priority, iceberg replenishment (the next tranche joins the back of its level)
and self-trade prevention (the taker's mode decides). Order types, bands and
states are the engine's.

Reduce-only orders carry a flag and nothing else: the book does not know
positions. ``match`` stops before filling a flagged maker and reports it
(REDUCE_ONLY_HALT), so the engine can fit it to its account's position as the
fills so far have left it; the engine then matches again, passing that maker
once. ``fillable`` is told how much each such account may still close.
"""
from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy

cimport cython

# Self-trade prevention modes (engine.messages.SelfTradePrevention).
cdef enum:
    STP_CANCEL_NEWEST = 0
    STP_CANCEL_OLDEST = 1
    STP_CANCEL_BOTH = 2
    STP_DECREMENT = 3

# Kinds of what match() reports (engine.messages.MatchRecord).
cdef enum:
    REC_FILL = 0             # a trade with the maker
    REC_CANCEL_MAKER = 1     # the resting own order was cancelled (qty = its leaves)
    REC_DECREMENT = 2        # both sides reduced by qty without a trade
    REC_CANCEL_TAKER = 3     # the taker stops here (qty = its cancelled remainder)
    REC_HALT = 4             # stopped before a reduce-only maker (qty = the taker's remaining)

cdef int64_t INITIAL_SPAN = 1024
cdef int64_t MAX_SPAN = 1 << 20      # levels per side: a $1,048 wide book at $0.001
cdef int64_t MAX_VALUE = 1 << 40     # prices and quantities; level totals stay in int64
                                     # up to 2**22 orders of this size (the Exchange caps
                                     # an order at 10**6 lots)

__all__ = ["OrderBook"]


# -- order id -> slot hash ----------------------------------------------------

cdef inline uint64_t _hash(int64_t key) noexcept:
    cdef uint64_t h = (<uint64_t>key) * <uint64_t>0x9E3779B97F4A7C15
    return h ^ (h >> 29)


cdef int _ids_init(IdMap* m, uint64_t cap) except -1:
    cdef uint64_t i
    m.keys = <int64_t*>malloc(cap * sizeof(int64_t))
    m.slots = <int32_t*>malloc(cap * sizeof(int32_t))
    if m.keys == NULL or m.slots == NULL:
        free(m.keys)
        free(m.slots)
        raise MemoryError()
    for i in range(cap):
        m.slots[i] = -1
    m.mask = cap - 1
    m.size = 0
    return 0


cdef inline int32_t _ids_get(IdMap* m, int64_t key) noexcept:
    cdef uint64_t i = _hash(key) & m.mask
    while m.slots[i] != -1:
        if m.keys[i] == key:
            return m.slots[i]
        i = (i + 1) & m.mask
    return -1


cdef int _ids_put(IdMap* m, int64_t key, int32_t slot) except -1:
    cdef IdMap bigger
    cdef uint64_t i
    if <uint64_t>(m.size + 1) * 2 > m.mask + 1:
        _ids_init(&bigger, (m.mask + 1) * 2)
        for i in range(m.mask + 1):
            if m.slots[i] != -1:
                _ids_put(&bigger, m.keys[i], m.slots[i])
        free(m.keys)
        free(m.slots)
        m[0] = bigger
    i = _hash(key) & m.mask
    while m.slots[i] != -1:
        i = (i + 1) & m.mask
    m.keys[i] = key
    m.slots[i] = slot
    m.size += 1
    return 0


cdef void _ids_del(IdMap* m, int64_t key) noexcept:
    # Backward-shift deletion keeps probe chains unbroken without tombstones.
    cdef uint64_t i = _hash(key) & m.mask, j, home
    while m.slots[i] != -1 and m.keys[i] != key:
        i = (i + 1) & m.mask
    if m.slots[i] == -1:
        return
    j = i
    while True:
        j = (j + 1) & m.mask
        if m.slots[j] == -1:
            break
        home = _hash(m.keys[j]) & m.mask
        # The entry at j may move to i only if its home is not in (i, j].
        if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        m.keys[i] = m.keys[j]
        m.slots[i] = m.slots[j]
        i = j
    m.slots[i] = -1
    m.size -= 1


cdef inline int64_t _min(int64_t a, int64_t b) noexcept:
    return a if a < b else b


cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil
    int __builtin_clzll(unsigned long long x) nogil


cdef inline void _bit_set(uint64_t* bits, int64_t i) noexcept:
    bits[i >> 6] |= (<uint64_t>1) << (i & 63)


cdef inline void _bit_clear(uint64_t* bits, int64_t i) noexcept:
    bits[i >> 6] &= ~((<uint64_t>1) << (i & 63))


cdef inline int64_t _set_at_or_below(uint64_t* bits, int64_t i) noexcept:
    # Highest set bit at index <= i, or -1.
    if i < 0:
        return -1
    cdef int64_t w = i >> 6
    cdef uint64_t word = bits[w] & (((<uint64_t>2) << (i & 63)) - 1)
    while not word:
        w -= 1
        if w < 0:
            return -1
        word = bits[w]
    return (w << 6) + 63 - __builtin_clzll(word)


cdef inline int64_t _set_at_or_above(uint64_t* bits, int64_t i, int64_t span) noexcept:
    # Lowest set bit at index >= i (below span), or -1.
    if i >= span:
        return -1
    cdef int64_t w = i >> 6, words = (span + 63) >> 6
    cdef uint64_t word = bits[w] & (~(<uint64_t>0) << (i & 63))
    while not word:
        w += 1
        if w >= words:
            return -1
        word = bits[w]
    return (w << 6) + __builtin_ctzll(word)


cdef inline int _check_side(int side) except -1:
    if side != 1 and side != -1:
        raise ValueError(f"side must be 1 or -1, not {side}")
    return 0


@cython.final          # no subclasses: internal calls bind directly and inline
cdef class OrderBook:
    """A price-time priority book of one instrument, prices in ticks, quantities in lots.

    Args:
        check_invariants: verify every structure after each mutation (tests).
    """

    def __cinit__(self, bint check_invariants=False):
        self.check_invariants_after_each = check_invariants
        self._pool_cap = 1024
        self._pool = <Order*>malloc(self._pool_cap * sizeof(Order))
        self._records_cap = 64
        self._records = <Record*>malloc(self._records_cap * sizeof(Record))
        self._touched_cap = 64
        self._touched = <int64_t*>malloc(self._touched_cap * sizeof(int64_t))
        if self._pool == NULL or self._records == NULL or self._touched == NULL:
            raise MemoryError()
        self._free = -1
        self._n_orders = 0
        self._grow_free_list(0)
        _ids_init(&self._ids, 2048)
        self._bids.levels = self._asks.levels = NULL
        self._bids.bits = self._asks.bits = NULL
        self._bids.best = self._asks.best = -1
        self._bids.active = self._asks.active = 0
        self._span = 0
        self._base = 0
        self._scratch = NULL
        self._scratch_qty = NULL
        self._scratch_cap = 0

    def __dealloc__(self):
        free(self._pool)
        free(self._records)
        free(self._touched)
        free(self._ids.keys)
        free(self._ids.slots)
        free(self._bids.levels)
        free(self._asks.levels)
        free(self._bids.bits)
        free(self._asks.bits)
        free(self._scratch)
        free(self._scratch_qty)

    def __len__(self):
        return self._n_orders

    # -- Queries -----------------------------------------------------------

    cpdef object best_bid(self):
        """Return the best bid price in ticks, or None when no bid rests."""
        if self._bids.best < 0:
            return None
        return self._base + self._bids.best

    cpdef object best_ask(self):
        """Return the best ask price in ticks, or None when no ask rests."""
        if self._asks.best < 0:
            return None
        return self._base + self._asks.best

    cpdef bint would_take(self, int side, int64_t limit):
        """Return whether an order of ``side`` at ``limit`` would trade on arrival."""
        _check_side(side)
        cdef Ladder* opp = self._ladder(-side)
        if opp.best < 0:
            return False
        if side == 1:
            return self._base + opp.best <= limit
        return self._base + opp.best >= limit

    cpdef bint fillable(self, int side, int64_t limit, int64_t qty,
                        int64_t account_id, int stp, dict caps=None):
        """Return whether ``match`` with these arguments would fill all of ``qty``.

        Decides a fill-or-kill before any fill. It replays the queue order
        ``match`` would follow (iceberg tranches rejoin the back of their
        level; an own order stops the taker unless the mode is cancel-oldest)
        without changing anything.

        Args:
            caps: account_id -> lots that account's reduce-only makers may still
                close (its position's size when the maker side closes it, else
                0). As the engine fits a halted maker, each reduce-only maker is
                cut to its account's cap (the iceberg reserve first; at 0 it is
                gone), and every fill of a capped account lowers its cap. A
                reduce-only maker of an account not named counts for nothing.
        """
        return self._walk(side, limit, qty, account_id, stp, caps, None) == qty

    cpdef list sweep(self, int side, int64_t limit, int64_t qty, int64_t account_id, int stp,
                     dict caps=None):
        """Return what ``match`` with these arguments would fill, as ``(price, lots)`` per
        level, best first, without changing anything (as ``fillable``). A strip prices its
        legs with it before any of them trades."""
        cdef list fills = []
        self._walk(side, limit, qty, account_id, stp, caps, fills)
        return fills

    cdef int64_t _walk(self, int side, int64_t limit, int64_t qty, int64_t account_id,
                       int stp, dict caps, list fills) except -1:
        """The lots ``match`` would fill (see ``fillable``); each level's into ``fills``."""
        _check_side(side)
        cdef Ladder* opp = self._ladder(-side)
        cdef int64_t need = qty, idx = opp.best, price, n, head, size, vis, hid, take, k
        cdef int64_t seen = 0, cap, excess, cut, before
        cdef int32_t slot
        cdef Level* lvl
        cdef Order* o
        cdef dict left = dict(caps) if caps else None
        while need > 0 and 0 <= idx < self._span and seen < opp.active:
            price = self._base + idx
            if (side == 1 and price > limit) or (side == -1 and price < limit):
                break
            lvl = &opp.levels[idx]
            idx += side                      # next worse level: asks go up, bids go down
            if lvl.count == 0:
                continue
            seen += 1
            before = need
            n = lvl.count
            self._ensure_scratch(n)
            slot = lvl.head
            for k in range(n):
                self._scratch[k] = slot
                self._scratch_qty[2 * k] = self._pool[slot].visible
                self._scratch_qty[2 * k + 1] = self._pool[slot].hidden
                slot = self._pool[slot].next
            head = 0
            size = n
            while size > 0 and need > 0:
                slot = self._scratch[head]
                vis = self._scratch_qty[2 * head]
                hid = self._scratch_qty[2 * head + 1]
                head = (head + 1) % n
                size -= 1
                o = &self._pool[slot]
                if o.account_id == account_id:
                    if stp == STP_CANCEL_OLDEST:
                        continue
                    need = -need             # an own order stops the taker here
                    break
                cap = -1
                if left is not None:
                    cap = left.get(o.account_id, -1)
                if o.reduce_only:
                    excess = vis + hid - (cap if cap > 0 else 0)
                    if excess > 0:
                        cut = _min(hid, excess)
                        hid -= cut
                        vis -= excess - cut
                    if vis == 0:
                        continue
                take = _min(vis, need)
                need -= take
                if cap >= 0:
                    left[o.account_id] = cap - take if cap > take else 0
                if take == vis and hid > 0:
                    k = (head + size) % n
                    self._scratch[k] = slot
                    self._scratch_qty[2 * k] = _min(o.display, hid)
                    self._scratch_qty[2 * k + 1] = hid - _min(o.display, hid)
                    size += 1
            if need < 0:
                need = -need
                if fills is not None and before > need:
                    fills.append((price, before - need))
                break
            if fills is not None and before > need:
                fills.append((price, before - need))
        return qty - need

    cpdef bint can_hold(self, int64_t price):
        """Return whether an order at ``price`` could rest here.

        The level arrays cover at most MAX_SPAN ticks, so the resting orders
        and this price must lie within that distance of each other; an empty
        book can move anywhere. Callers check this before they change
        anything, so an order that could not rest is refused whole.
        """
        cdef int64_t lo, hi
        if not 0 < price <= MAX_VALUE:
            return False
        if self._n_orders == 0 or self._base <= price < self._base + self._span:
            return True
        self._occupied(&lo, &hi)
        return max(hi, price) - _min(lo, price) < MAX_SPAN

    cpdef list depth(self, int side, int n):
        """Return up to ``n`` levels of ``side``, best first, as (price, qty, orders)."""
        _check_side(side)
        cdef Ladder* ladder = self._ladder(side)
        cdef list out = []
        cdef int64_t idx = ladder.best
        cdef Level* lvl
        if idx < 0:
            return out
        while len(out) < n and len(out) < ladder.active:
            lvl = &ladder.levels[idx]
            if lvl.count:
                out.append((self._base + idx, lvl.qty, lvl.count))
            idx -= side
        return out

    cpdef list orders(self, int side):
        """Return every order of ``side`` in priority order (L3), best level first.

        Each is (order_id, account_id, price, visible, hidden).
        """
        _check_side(side)
        cdef Ladder* ladder = self._ladder(side)
        cdef list out = []
        cdef int64_t idx = ladder.best, found = 0
        cdef int32_t slot
        cdef Order* o
        if idx < 0:
            return out
        while found < ladder.active:
            if ladder.levels[idx].count:
                found += 1
                slot = ladder.levels[idx].head
                while slot != -1:
                    o = &self._pool[slot]
                    out.append((o.order_id, o.account_id, o.price, o.visible, o.hidden))
                    slot = o.next
            idx -= side
        return out

    def __reduce__(self):
        """Pickle as the resting orders in priority order (snapshots): the arrays,
        pool slots and hash layout are rebuilt, not copied."""
        cdef list rows = []
        cdef int side
        cdef int32_t slot
        for side in (1, -1):
            for row in self.orders(side):
                slot = _ids_get(&self._ids, row[0])
                rows.append((row[0], row[1], side, row[2], row[3], row[4],
                             self._pool[slot].display, self._pool[slot].reduce_only))
        return _restored_book, (self.check_invariants_after_each, rows)

    cpdef object order(self, int64_t order_id):
        """Return (side, price, visible, hidden) of a resting order, or None."""
        cdef int32_t slot = _ids_get(&self._ids, order_id)
        if slot < 0:
            return None
        cdef Order* o = &self._pool[slot]
        return (o.side, o.price, o.visible, o.hidden)

    cpdef list changes(self):
        """Return the levels changed since the last call as (side, price, qty, orders).

        A level that emptied has qty 0. Each level appears once, in the order
        it was first touched.
        """
        cdef list out = []
        cdef int64_t k, signed, price
        cdef int side
        cdef Level* lvl
        for k in range(self._n_touched):
            signed = self._touched[k]
            side = 1 if signed > 0 else -1
            price = signed if signed > 0 else -signed
            if not self._base <= price < self._base + self._span:
                # The level emptied and the arrays have moved on since.
                out.append((side, price, 0, 0))
                continue
            lvl = &self._ladder(side).levels[price - self._base]
            lvl.dirty = 0
            out.append((side, price, lvl.qty, lvl.count))
        self._n_touched = 0
        return out

    # -- Mutations ---------------------------------------------------------

    cpdef add(self, int64_t order_id, int64_t account_id, int side,
              int64_t price, int64_t qty, int64_t display=0, bint reduce_only=False):
        """Rest an order at the back of its level.

        The caller matches first: an order that would cross the other side is
        refused, so the book is never crossed at rest.

        Args:
            order_id: Unique among resting orders.
            side: 1 buy, -1 sell.
            price: Ticks, at least 1.
            qty: Lots, at least 1.
            display: Iceberg tranche size; 0 (or >= qty) shows the whole order.
            reduce_only: ``match`` stops before filling it, unless passed.

        Raises:
            ValueError: on a bad side, quantity or price, a resting duplicate
                id, or a price that would cross.
        """
        _check_side(side)
        if not (0 < price <= MAX_VALUE and 0 < qty <= MAX_VALUE and 0 <= display <= MAX_VALUE):
            raise ValueError(f"bad order: price={price} qty={qty} display={display}")
        if _ids_get(&self._ids, order_id) >= 0:
            raise ValueError(f"order {order_id} is already resting")
        if self.would_take(side, price):
            raise ValueError(f"order {order_id} at {price} would cross the book")
        if 0 < display < qty:
            self._rest(order_id, account_id, side, price, display, qty - display, display,
                       reduce_only)
        else:
            self._rest(order_id, account_id, side, price, qty, 0, 0, reduce_only)

    cdef _rest(self, int64_t order_id, int64_t account_id, int side, int64_t price,
               int64_t visible, int64_t hidden, int64_t display, bint reduce_only):
        """Link a checked order in at the back of its level, split as given."""
        self._ensure_price(price)
        cdef int32_t slot = self._alloc()
        cdef Order* o = &self._pool[slot]
        o.order_id = order_id
        o.account_id = account_id
        o.side = side
        o.price = price
        o.display = display
        o.visible = visible
        o.hidden = hidden
        o.reduce_only = reduce_only
        _ids_put(&self._ids, order_id, slot)
        cdef Ladder* ladder = self._ladder(side)
        cdef int64_t idx = price - self._base
        self._link_back(ladder, idx, slot)
        if side == 1:
            if ladder.best < idx:
                ladder.best = idx
        elif ladder.best < 0 or ladder.best > idx:
            ladder.best = idx
        self._touch(side, idx)
        self._n_orders += 1
        if self.check_invariants_after_each:
            self.check_invariants()

    cpdef int64_t cancel(self, int64_t order_id) except -1:
        """Remove a resting order; return its leaves qty (visible + hidden), or 0 if not resting."""
        cdef int32_t slot = _ids_get(&self._ids, order_id)
        if slot < 0:
            return 0
        cdef int64_t leaves = self._pool[slot].visible + self._pool[slot].hidden
        self._remove_slot(slot)
        if self.check_invariants_after_each:
            self.check_invariants()
        return leaves

    cpdef reduce(self, int64_t order_id, int64_t leaves):
        """Lower a resting order's leaves qty in place, keeping its time priority.

        The iceberg reserve is reduced first, then the shown part.

        Raises:
            KeyError: the order is not resting.
            ValueError: ``leaves`` is not between 1 and the current leaves - 1.
        """
        cdef int32_t slot = _ids_get(&self._ids, order_id)
        if slot < 0:
            raise KeyError(order_id)
        cdef Order* o = &self._pool[slot]
        cdef int64_t current = o.visible + o.hidden
        if not 0 < leaves < current:
            raise ValueError(f"reduce {order_id} to {leaves}: must be 1..{current - 1}")
        self._shrink(o, current - leaves)
        if self.check_invariants_after_each:
            self.check_invariants()

    cpdef list match(self, int side, int64_t limit, int64_t qty,
                     int64_t account_id, int stp, int64_t passed=0):
        """Match a taker against the other side up to ``limit``; return what happened.

        The taker itself never rests here: the caller rests or cancels its
        remainder. Each returned tuple is (kind, maker_order_id,
        maker_account_id, price, qty, maker_leaves) in the order it happened,
        kind being FILL 0, STP_CANCEL_MAKER 1, STP_DECREMENT 2,
        STP_CANCEL_TAKER 3 or REDUCE_ONLY_HALT 4 (see engine.messages.MatchRecord).

        A reduce-only maker another account's taker would fill stops the walk
        before it: the last tuple is then REDUCE_ONLY_HALT naming it (qty: the
        taker's remaining lots), and the caller fits the maker to its position
        and calls again, passing it.

        Args:
            side: The taker's side, 1 buy or -1 sell.
            limit: Worst price the taker accepts, in ticks.
            qty: Taker quantity in lots.
            account_id: The taker's account, for self-trade prevention.
            stp: The taker's self-trade prevention mode (0..3).
            passed: A reduce-only maker to fill without stopping, once: an
                iceberg of it stops the walk again at its next tranche.
        """
        _check_side(side)
        cdef Ladder* opp = self._ladder(-side)
        cdef int64_t remaining = qty, idx, price, take, leaves, shown
        cdef int32_t slot
        cdef Level* lvl
        cdef Order* o
        self._n_records = 0
        while remaining > 0 and opp.best >= 0:
            idx = opp.best
            price = self._base + idx
            if (side == 1 and price > limit) or (side == -1 and price < limit):
                break
            lvl = &opp.levels[idx]
            slot = lvl.head
            o = &self._pool[slot]
            leaves = o.visible + o.hidden
            if o.account_id == account_id:
                if stp == STP_CANCEL_OLDEST or stp == STP_CANCEL_BOTH:
                    self._record(REC_CANCEL_MAKER, o, price, leaves, 0)
                    if stp == STP_CANCEL_BOTH:
                        self._record(REC_CANCEL_TAKER, o, price, remaining, 0)
                        remaining = 0
                    self._remove_slot(slot)
                elif stp == STP_DECREMENT:
                    take = _min(leaves, remaining)
                    remaining -= take
                    self._record(REC_DECREMENT, o, price, take, leaves - take)
                    if take == leaves:
                        self._remove_slot(slot)
                    else:
                        self._shrink(o, take)
                else:
                    self._record(REC_CANCEL_TAKER, o, price, remaining, leaves)
                    remaining = 0
                continue
            if o.reduce_only:
                if o.order_id != passed:
                    self._record(REC_HALT, o, price, remaining, leaves)
                    break
                passed = 0
            take = _min(o.visible, remaining)
            remaining -= take
            o.visible -= take
            lvl.qty -= take
            self._touch(-side, idx)
            self._record(REC_FILL, o, price, take, o.visible + o.hidden)
            if o.visible > 0:
                continue
            if o.hidden == 0:
                self._remove_slot(slot)
                continue
            # Iceberg: the next tranche joins the back of the level (loses priority).
            shown = _min(o.display, o.hidden)
            if lvl.tail != slot:
                self._unlink(opp, idx, slot)
                o.hidden -= shown
                o.visible = shown
                self._link_back(opp, idx, slot)
            else:
                o.hidden -= shown
                o.visible = shown
                lvl.hidden -= shown
                lvl.qty += shown
        cdef list out = []
        cdef Record* r
        cdef int64_t k
        for k in range(self._n_records):
            r = &self._records[k]
            out.append((r.kind, r.maker_order_id, r.maker_account_id, r.price,
                        r.qty, r.maker_leaves))
        if self.check_invariants_after_each:
            self.check_invariants()
        return out

    # -- Checks --------------------------------------------------------------

    cpdef check_invariants(self):
        """Verify every structure; raise AssertionError naming the first broken rule."""
        cdef int side
        cdef Ladder* ladder
        cdef int64_t idx, qty, hidden, active, total = 0, best
        cdef int32_t slot, prev, count
        cdef Order* o
        cdef Level* lvl
        for side in (1, -1):
            ladder = self._ladder(side)
            active = 0
            best = -1
            for idx in range(self._span):
                lvl = &ladder.levels[idx]
                assert ((ladder.bits[idx >> 6] >> (idx & 63)) & 1) == (lvl.count > 0), \
                    f"bitmap disagrees with level {idx}"
                if lvl.count == 0:
                    assert lvl.qty == 0 and lvl.hidden == 0, f"empty level {idx} has qty"
                    continue
                active += 1
                if best < 0 or (side == 1 and idx > best) or (side == -1 and idx < best):
                    best = idx
                qty = hidden = 0
                count = 0
                prev = -1
                slot = lvl.head
                while slot != -1:
                    o = &self._pool[slot]
                    assert o.prev == prev, f"broken back link at slot {slot}"
                    assert o.side == side and o.price == self._base + idx, "order on wrong level"
                    assert o.visible > 0 and o.hidden >= 0, f"order {o.order_id} has no shown qty"
                    assert o.hidden == 0 or 0 < o.visible <= o.display, "iceberg tranche too big"
                    assert _ids_get(&self._ids, o.order_id) == slot, "id index out of date"
                    qty += o.visible
                    hidden += o.hidden
                    count += 1
                    prev = slot
                    slot = o.next
                assert lvl.tail == prev, f"tail of level {idx} is not its last order"
                assert count == lvl.count and qty == lvl.qty and hidden == lvl.hidden, \
                    f"level {idx} totals disagree with its orders"
                total += count
            assert active == ladder.active, "active level count is wrong"
            assert best == ladder.best, "best price index is stale"
        assert total == self._n_orders == self._ids.size, "order count disagrees with index"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"book crossed at rest: {bid} >= {ask}"

    # -- Internals -----------------------------------------------------------

    cdef Ladder* _ladder(self, int side) noexcept:
        return &self._bids if side == 1 else &self._asks

    cdef int _grow_free_list(self, int32_t start) except -1:
        cdef int32_t i
        for i in range(self._pool_cap - 1, start - 1, -1):
            self._pool[i].next = self._free
            self._free = i
        return 0

    cdef int32_t _alloc(self) except -1:
        cdef int32_t old = self._pool_cap
        cdef Order* grown
        if self._free < 0:
            if old >= (1 << 30):
                raise MemoryError("the order pool is full")
            grown = <Order*>realloc(self._pool, 2 * old * sizeof(Order))
            if grown == NULL:
                raise MemoryError()
            self._pool = grown
            self._pool_cap = 2 * old
            self._grow_free_list(old)
        cdef int32_t slot = self._free
        self._free = self._pool[slot].next
        return slot

    cdef void _release(self, int32_t slot) noexcept:
        self._pool[slot].next = self._free
        self._free = slot

    cdef void _occupied(self, int64_t* lo, int64_t* hi) noexcept:
        # Lowest and highest price with a resting order (the book is not empty):
        # the best prices give one end of each side, the bitmaps the other.
        if self._bids.best >= 0:
            lo[0] = _set_at_or_above(self._bids.bits, 0, self._span)
            hi[0] = self._bids.best
        else:
            lo[0] = hi[0] = self._asks.best
        if self._asks.best >= 0:
            lo[0] = _min(lo[0], self._asks.best)
            hi[0] = max(hi[0], _set_at_or_below(self._asks.bits, self._span - 1))
        lo[0] += self._base
        hi[0] += self._base

    cdef int _ensure_price(self, int64_t price) except -1:
        # Move both ladders onto a range that covers the resting orders and price.
        if self._span and self._base <= price < self._base + self._span:
            return 0
        if not self.can_hold(price):
            raise ValueError(f"price {price} is too far from the rest of the book")
        cdef int64_t lo, hi, width, span, base, shift, k, p
        if self._n_orders == 0:
            lo = hi = price
            span = INITIAL_SPAN
        else:
            self._occupied(&lo, &hi)
            lo = _min(lo, price)
            hi = max(hi, price)
            span = _min(MAX_SPAN, max(INITIAL_SPAN, 2 * (hi - lo + 1)))
        base = lo - (span - (hi - lo + 1)) // 2
        cdef Level* bids = <Level*>calloc(span, sizeof(Level))
        cdef Level* asks = <Level*>calloc(span, sizeof(Level))
        cdef uint64_t* bid_bits = <uint64_t*>calloc((span + 63) >> 6, sizeof(uint64_t))
        cdef uint64_t* ask_bits = <uint64_t*>calloc((span + 63) >> 6, sizeof(uint64_t))
        if bids == NULL or asks == NULL or bid_bits == NULL or ask_bits == NULL:
            free(bids)
            free(asks)
            free(bid_bits)
            free(ask_bits)
            raise MemoryError()
        if self._n_orders:
            # Copy the occupied levels [old lo, old hi]; the rest are empty.
            self._occupied(&lo, &hi)
            shift = self._base - base
            memcpy(&bids[lo - base], &self._bids.levels[lo - self._base],
                   (hi - lo + 1) * sizeof(Level))
            memcpy(&asks[lo - base], &self._asks.levels[lo - self._base],
                   (hi - lo + 1) * sizeof(Level))
            if self._bids.best >= 0:
                self._bids.best += shift
            if self._asks.best >= 0:
                self._asks.best += shift
            for k in range(lo - base, hi - base + 1):
                if bids[k].count:
                    _bit_set(bid_bits, k)
                if asks[k].count:
                    _bit_set(ask_bits, k)
        free(self._bids.levels)
        free(self._asks.levels)
        free(self._bids.bits)
        free(self._asks.bits)
        self._bids.levels = bids
        self._asks.levels = asks
        self._bids.bits = bid_bits
        self._asks.bits = ask_bits
        self._base = base
        self._span = span
        # Levels that emptied in this command are still to be reported once;
        # mark those the new range covers, so a later touch does not list them twice.
        for k in range(self._n_touched):
            p = self._touched[k] if self._touched[k] > 0 else -self._touched[k]
            if base <= p < base + span:
                self._ladder(1 if self._touched[k] > 0 else -1).levels[p - base].dirty = 1
        return 0

    cdef int _ensure_scratch(self, int64_t n) except -1:
        if n <= self._scratch_cap:
            return 0
        cdef int64_t cap = max(n, 2 * self._scratch_cap)
        cdef int32_t* s = <int32_t*>realloc(self._scratch, cap * sizeof(int32_t))
        if s == NULL:
            raise MemoryError()
        self._scratch = s
        cdef int64_t* q = <int64_t*>realloc(self._scratch_qty, 2 * cap * sizeof(int64_t))
        if q == NULL:
            raise MemoryError()
        self._scratch_qty = q
        self._scratch_cap = cap
        return 0

    cdef void _link_back(self, Ladder* ladder, int64_t idx, int32_t slot) noexcept:
        cdef Level* lvl = &ladder.levels[idx]
        cdef Order* o = &self._pool[slot]
        o.next = -1
        if lvl.count:
            o.prev = lvl.tail
            self._pool[lvl.tail].next = slot
        else:
            o.prev = -1
            lvl.head = slot
            ladder.active += 1
            _bit_set(ladder.bits, idx)
        lvl.tail = slot
        lvl.count += 1
        lvl.qty += o.visible
        lvl.hidden += o.hidden

    cdef void _unlink(self, Ladder* ladder, int64_t idx, int32_t slot) noexcept:
        cdef Level* lvl = &ladder.levels[idx]
        cdef Order* o = &self._pool[slot]
        if o.prev != -1:
            self._pool[o.prev].next = o.next
        else:
            lvl.head = o.next
        if o.next != -1:
            self._pool[o.next].prev = o.prev
        else:
            lvl.tail = o.prev
        lvl.count -= 1
        lvl.qty -= o.visible
        lvl.hidden -= o.hidden
        if lvl.count == 0:
            ladder.active -= 1
            _bit_clear(ladder.bits, idx)

    cdef void _move_best(self, Ladder* ladder, int side) noexcept:
        # Called when the best level emptied: walk to the next non-empty one.
        if ladder.active == 0:
            ladder.best = -1
        elif side == 1:
            ladder.best = _set_at_or_below(ladder.bits, ladder.best - 1)
        else:
            ladder.best = _set_at_or_above(ladder.bits, ladder.best + 1, self._span)

    cdef int _shrink(self, Order* o, int64_t delta) except -1:
        # Reduce leaves by delta in place: the iceberg reserve first, then the shown part.
        cdef Ladder* ladder = self._ladder(o.side)
        cdef int64_t idx = o.price - self._base
        cdef Level* lvl = &ladder.levels[idx]
        cdef int64_t from_hidden = _min(o.hidden, delta)
        o.hidden -= from_hidden
        lvl.hidden -= from_hidden
        delta -= from_hidden
        if delta:
            o.visible -= delta
            lvl.qty -= delta
            self._touch(o.side, idx)
        return 0

    cdef int _touch(self, int side, int64_t idx) except -1:
        cdef Level* lvl = &self._ladder(side).levels[idx]
        cdef int64_t* grown
        if lvl.dirty:
            return 0
        if self._n_touched == self._touched_cap:
            grown = <int64_t*>realloc(self._touched, 2 * self._touched_cap * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self._touched = grown
            self._touched_cap *= 2
        lvl.dirty = 1
        self._touched[self._n_touched] = side * (self._base + idx)
        self._n_touched += 1
        return 0

    cdef int _record(self, int kind, Order* maker, int64_t price, int64_t qty,
                     int64_t maker_leaves) except -1:
        cdef Record* grown
        if self._n_records == self._records_cap:
            grown = <Record*>realloc(self._records, 2 * self._records_cap * sizeof(Record))
            if grown == NULL:
                raise MemoryError()
            self._records = grown
            self._records_cap *= 2
        cdef Record* r = &self._records[self._n_records]
        r.kind = kind
        r.maker_order_id = maker.order_id
        r.maker_account_id = maker.account_id
        r.price = price
        r.qty = qty
        r.maker_leaves = maker_leaves
        self._n_records += 1
        return 0

    cdef int _remove_slot(self, int32_t slot) except -1:
        cdef Order* o = &self._pool[slot]
        cdef int side = o.side
        cdef Ladder* ladder = self._ladder(side)
        cdef int64_t idx = o.price - self._base
        self._touch(side, idx)
        self._unlink(ladder, idx, slot)
        if ladder.levels[idx].count == 0 and ladder.best == idx:
            self._move_best(ladder, side)
        _ids_del(&self._ids, o.order_id)
        self._release(slot)
        self._n_orders -= 1
        return 0


def _restored_book(bint check_invariants, list rows):
    """An OrderBook holding ``rows`` (OrderBook.__reduce__), each at the back of its level
    in the order given, iceberg tranches as they were; no level is left to report."""
    cdef OrderBook book = OrderBook(check_invariants)
    for order_id, account_id, side, price, visible, hidden, display, reduce_only in rows:
        if not (0 < price <= MAX_VALUE and 0 < visible <= MAX_VALUE
                and 0 <= hidden <= MAX_VALUE and 0 <= display <= MAX_VALUE):
            raise ValueError(f"bad resting order {order_id} in a snapshot")
        if _ids_get(&book._ids, order_id) >= 0 or book.would_take(side, price):
            raise ValueError(f"order {order_id} cannot rest in a snapshot's book")
        book._rest(order_id, account_id, side, price, visible, hidden, display, reduce_only)
    book.changes()
    return book
