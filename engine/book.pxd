# engine/book.pxd: the shape of the limit order book (see book.pyx for why).
#
# Storage, in short: resting orders are C structs in one growable pool, linked
# into an intrusive doubly-linked FIFO per price level; levels are a flat array
# per side indexed by (price - base); an open-addressing hash maps order id to
# pool slot; the best price of each side is an index moved only when its level
# empties. No Python object exists per resting order.
from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t


cdef struct Order:
    int64_t order_id
    int64_t account_id
    int64_t price
    int64_t visible          # quantity shown in the book
    int64_t hidden           # iceberg reserve, shown tranche by tranche
    int64_t display          # iceberg tranche size; 0 for a plain order
    int32_t prev             # FIFO neighbours within the level; -1 = none
    int32_t next             # (also the free-list link of a free slot)
    int8_t side              # 1 buy, -1 sell
    int8_t reduce_only       # match() stops before it unless passed (the engine fits it)


cdef struct Level:
    int64_t qty              # sum of visible quantities
    int64_t hidden           # sum of iceberg reserves (FOK needs them)
    int32_t count            # resting orders
    int32_t head             # oldest order's slot; -1 = empty level
    int32_t tail
    int8_t dirty             # changed since the last changes() call


cdef struct Ladder:
    Level* levels            # levels[i] holds price base + i
    uint64_t* bits           # bit i set: levels[i] has orders (finds the next best fast)
    int64_t best             # index of the best non-empty level; -1 = empty side
    int64_t active           # non-empty levels


cdef struct IdMap:
    int64_t* keys
    int32_t* slots           # -1 = empty bucket
    uint64_t mask
    int64_t size


cdef struct Record:
    int8_t kind              # FILL, STP_CANCEL_MAKER, STP_DECREMENT, STP_CANCEL_TAKER,
                             # REDUCE_ONLY_HALT
    int64_t maker_order_id
    int64_t maker_account_id
    int64_t price
    int64_t qty
    int64_t maker_leaves


cdef class OrderBook:
    cdef Order* _pool
    cdef int32_t _pool_cap
    cdef int32_t _free           # head of the free-slot list; -1 = none
    cdef int64_t _n_orders
    cdef IdMap _ids
    cdef Ladder _bids
    cdef Ladder _asks
    cdef int64_t _base           # price of index 0 in both ladders
    cdef int64_t _span           # levels allocated per side
    cdef Record* _records        # outcome of the current match()
    cdef int64_t _n_records
    cdef int64_t _records_cap
    cdef int64_t* _touched       # signed prices of dirty levels: +p bid, -p ask
    cdef int64_t _n_touched
    cdef int64_t _touched_cap
    cdef int32_t* _scratch       # FOK simulation queue
    cdef int64_t* _scratch_qty
    cdef int64_t _scratch_cap
    cdef readonly bint check_invariants_after_each

    # -- Queries -----------------------------------------------------------
    cpdef object best_bid(self)
    cpdef object best_ask(self)
    cpdef bint would_take(self, int side, int64_t limit)
    cpdef bint can_hold(self, int64_t price)
    cpdef bint fillable(self, int side, int64_t limit, int64_t qty,
                        int64_t account_id, int stp, dict caps=*)
    cpdef list sweep(self, int side, int64_t limit, int64_t qty, int64_t account_id, int stp,
                     dict caps=*)
    cdef int64_t _walk(self, int side, int64_t limit, int64_t qty, int64_t account_id,
                       int stp, dict caps, list fills) except -1
    cpdef list depth(self, int side, int n)
    cpdef list orders(self, int side)
    cpdef object order(self, int64_t order_id)
    cpdef list changes(self)

    # -- Mutations ---------------------------------------------------------
    cpdef add(self, int64_t order_id, int64_t account_id, int side,
              int64_t price, int64_t qty, int64_t display=*, bint reduce_only=*)
    cpdef int64_t cancel(self, int64_t order_id) except -1
    cpdef reduce(self, int64_t order_id, int64_t leaves)
    cpdef list match(self, int side, int64_t limit, int64_t qty,
                     int64_t account_id, int stp, int64_t passed=*)

    # -- Checks (tests, and books built with check_invariants=True) ----------
    cpdef check_invariants(self)

    # -- Internals -----------------------------------------------------------
    cdef Ladder* _ladder(self, int side) noexcept
    cdef int _ensure_price(self, int64_t price) except -1
    cdef void _occupied(self, int64_t* lo, int64_t* hi) noexcept
    cdef int _ensure_scratch(self, int64_t n) except -1
    cdef int _grow_free_list(self, int32_t start) except -1
    cdef int32_t _alloc(self) except -1
    cdef _rest(self, int64_t order_id, int64_t account_id, int side, int64_t price,
               int64_t visible, int64_t hidden, int64_t display, bint reduce_only)
    cdef int _shrink(self, Order* o, int64_t delta) except -1
    cdef void _link_back(self, Ladder* ladder, int64_t idx, int32_t slot) noexcept
    cdef void _unlink(self, Ladder* ladder, int64_t idx, int32_t slot) noexcept
    cdef void _release(self, int32_t slot) noexcept
    cdef void _move_best(self, Ladder* ladder, int side) noexcept
    cdef int _touch(self, int side, int64_t idx) except -1
    cdef int _record(self, int kind, Order* maker, int64_t price, int64_t qty,
                     int64_t maker_leaves) except -1
    cdef int _remove_slot(self, int32_t slot) except -1
