# engine/exchange.pxd: the shape of the matching engine (see exchange.pyx).
#
# Order and Market are cdef classes so the order path reads and writes their
# fields as C struct members; Exchange keeps the per-order bookkeeping (ids,
# client order ids, live orders per account, live reduce-only orders per
# account, GTD expiries, retention).
from libc.stdint cimport INT64_MAX, int64_t

from engine.book cimport OrderBook


cdef class Order:
    cdef readonly int64_t order_id
    cdef readonly int64_t account_id
    cdef readonly str symbol
    cdef readonly object side             # Side
    cdef readonly object order_type       # OrderType
    cdef readonly object tif              # TimeInForce
    cdef readonly object price            # ticks, or None (market, stop-market)
    cdef readonly object stop_price       # ticks, or None
    cdef readonly int64_t qty             # lots; = filled + leaves + cancelled/expired
    cdef readonly int64_t filled_qty
    cdef readonly int64_t leaves_qty
    cdef readonly object status           # OrderStatus
    cdef readonly object display_qty      # iceberg tranche, or None
    cdef readonly bint post_only
    cdef readonly bint reduce_only
    cdef readonly object stp              # SelfTradePrevention
    cdef readonly object expire_at_ns
    cdef readonly object client_order_id
    cdef readonly object request          # the PlaceOrder if it has a client_order_id
    cdef readonly object closed_ns
    cdef int _side                        # 1 / -1, for the book
    cdef bint _live


cdef class Market:
    cdef readonly object instrument
    cdef readonly str symbol
    cdef readonly object book             # engine.book.OrderBook (or the tests' reference book)
    cdef readonly object status           # InstrumentStatus
    cdef readonly object halt_reason      # str while halted, else None
    cdef readonly object last_price       # ticks, or None before the first trade
    cdef readonly int64_t reference_price
    cdef readonly int64_t band_centre      # last trade, or a later reference price
    cdef readonly int64_t book_seq
    cdef readonly int64_t volume
    cdef readonly int64_t band_low
    cdef readonly int64_t band_high
    cdef readonly object buy_stops        # SortedList of (stop_price, order_id)
    cdef readonly object sell_stops       # SortedList of (-stop_price, order_id)
    cdef readonly int64_t min_qty
    cdef readonly int64_t max_qty
    cdef OrderBook _fast                  # the book, when it is the compiled one
    cdef int64_t _print_low               # lowest / highest trade price since the
    cdef int64_t _print_high              # stops last looked (INT64_MAX / 0: none)
    cdef int64_t _n_stops                 # untriggered stops, both sides
    cdef int64_t _band_bps
    cdef bint _dirty

    cdef bint _would_take(self, int side, int64_t limit) except -1
    cdef list _match(self, int side, int64_t limit, int64_t qty, int64_t account_id, int stp,
                     int64_t passed)
    cdef _add(self, int64_t order_id, int64_t account_id, int side, int64_t price,
              int64_t qty, int64_t display, bint reduce_only)
    cdef _cancel(self, int64_t order_id)
    cdef bint _can_hold(self, int64_t price) except -1
    cdef list _changes(self)
    cdef void _set_band(self)


cdef class Exchange:
    cdef readonly object risk
    cdef bint _risk_gated
    cdef readonly dict markets            # symbol -> Market
    cdef readonly dict orders             # order_id -> Order, live and recently closed
    cdef dict _by_client                  # (account_id, client_order_id) -> order_id
    cdef dict _live                       # account_id -> {order_id: Order}
    cdef dict _reducing                   # account_id -> {order_id: Order}, its live
                                          # reduce-only orders (with a risk gate only)
    cdef Py_ssize_t _applied              # events of this command handed to risk.apply
    cdef readonly list _expiries          # heap of (expire_at_ns, order_id); readable by tests
    cdef int64_t _gtd_live                # live orders with an expire_at
    cdef list _closings                   # sorted (last_trading_ns, symbol)
    cdef object _closed                   # deque of closed Orders, oldest first
    cdef int64_t _keep_ns                 # how long a closed order stays in memory
    cdef readonly object archive          # where older closed orders are (attach_archive)
    cdef public list forgotten            # orders dropped from memory, for the archive
    cdef int64_t _next_deadline           # earliest ts at which _advance has work
    cdef int64_t _next_order_id
    cdef int64_t _last_ts                 # ts_ns of the previous command
    cdef int64_t _next_trade_id
    cdef list _dirty                      # markets whose book changed in this command
    cdef int64_t _next_strip_id
    cdef bint _strip_checked              # placing a strip's legs: clearing saw them together
    cdef object _book_factory             # builds the book of a contract listed later
    cdef bint _check_invariants

    # -- Order path ------------------------------------------------------------
    cdef _place(self, object cmd, list events)
    cdef _execute(self, Market market, Order order, int64_t limit, object ts, list events)
    cdef _take(self, Market market, Order order, int64_t limit, object ts, list events)
    cdef _cancel_remainder_for(self, Market market, Order order, object reason, object ts,
                               list events)
    cdef _fire_stops(self, Market market, object ts, list events)

    # -- Reduce-only (positions are the risk gate's) ---------------------------------
    cdef _sync(self, list events)
    cdef int64_t _closing(self, int64_t account_id, str symbol, int side, list events) except -1
    cdef tuple _room(self, int64_t account_id, str symbol, int side, Order replaced,
                     list events)
    cdef dict _caps(self, Market market, int side, list events)
    cdef int64_t _fit_maker(self, Market market, Order maker, object ts, list events) except -1
    cdef _cut(self, Market market, Order order, int64_t lots, bint resting, object ts,
              list events)
    cdef _fit_reducing(self, object ts, list events)
    cdef Order _find(self, int64_t account_id, object order_id, object client_order_id)
    cdef object _archived(self, int64_t account_id, object order_id, object client_order_id,
                          object ts)
    cdef _cancel(self, Order order, object reason, object ts, list events)
    cdef _unrest(self, Market market, Order order)
    cdef _cancel_all(self, object cmd, list events)
    cdef _replace(self, object cmd, list events)
    cdef _modify(self, Order order, object cmd, list events)

    # -- Status and time -----------------------------------------------------------
    cdef _set_status(self, Market market, object status, object ts, list events,
                     object reason=*)
    cdef _list(self, object instrument, object ts, list events)
    cdef _place_strip(self, object cmd, list events)
    cdef tuple _plan_strip(self, list symbols, int side, int64_t qty, object limit,
                           int64_t account_id, int stp, list events)
    cdef _delist(self, Market market, object ts, list events)
    cdef _advance(self, object ts, list events)
    cdef _reset_deadline(self)
    cdef _rebuild_expiries(self)

    # -- Helpers -----------------------------------------------------------------------
    cdef Market _market(self, object symbol)
    cdef _close(self, Order order, object status, object ts)
    cdef _dirty_market(self, Market market)
    cdef _publish_levels(self, object ts, list events)
