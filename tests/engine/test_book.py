"""engine/book.pyx on its own: its API against the reference book, and its refusals.

The Exchange-level differential test keeps prices in a narrow band; here prices
jump across a wide range too, so the level arrays grow, re-centre and start
afresh when the book empties, with every structure checked after each call.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engine.book import OrderBook
from oracle import ReferenceBook

sides = st.sampled_from([1, -1])
near = st.integers(990, 1010)
far = st.one_of(st.integers(1, 200), st.integers(50_000, 400_000),
               st.integers(1_040_000, 1_060_000))      # past the widest range one book holds
prices = st.one_of(near, near, near, far)
qtys = st.integers(1, 9)
accounts = st.integers(1, 3)
stps = st.integers(0, 3)


class BookApisAgree(RuleBasedStateMachine):
    """Every call returns the same on OrderBook and ReferenceBook."""

    def __init__(self) -> None:
        super().__init__()
        self.fast = OrderBook(check_invariants=True)
        self.slow = ReferenceBook()
        self.next_id = 1

    def both(self, name, *args):
        try:
            expected = getattr(self.slow, name)(*args)
        except (ValueError, KeyError) as e:
            with pytest.raises(type(e)):
                getattr(self.fast, name)(*args)
            return None
        assert getattr(self.fast, name)(*args) == expected, (name, args)
        return expected

    def live_ids(self):
        return sorted(o[0] for side in (1, -1) for o in self.slow.orders(side)) or [0]

    @rule(side=sides, price=prices, qty=qtys, account=accounts,
          display=st.one_of(st.just(0), st.integers(1, 4)),
          reduce_only=st.sampled_from([False, False, True]))
    def add(self, side, price, qty, account, display, reduce_only):
        if self.both("can_hold", price):          # callers check first; add refuses too
            self.both("add", self.next_id, account, side, price, qty, display, reduce_only)
        else:
            with pytest.raises(ValueError):
                self.fast.add(self.next_id, account, side, price, qty, display, reduce_only)
        self.next_id += 1

    @rule(data=st.data(), side=sides, price=prices, qty=st.integers(1, 30), account=accounts,
          stp=stps, caps=st.one_of(st.none(), st.dictionaries(accounts, st.integers(0, 12))))
    def match(self, data, side, price, qty, account, stp, caps):
        """fillable with caps for reduce-only makers; match, passing a halted maker (or
        any order: passing one that is not reduce-only changes nothing)."""
        self.both("fillable", side, price, qty, account, stp, caps)
        passed = data.draw(st.sampled_from([0] + self.live_ids()))
        self.both("match", side, price, qty, account, stp, passed)

    @rule(side=sides, price=near, first=qtys, second=qtys, account=accounts,
          taker=st.integers(4, 5), cap=st.integers(0, 12), qty=st.integers(1, 20))
    def through_own_order_to_reduce_only(self, side, price, first, second, account, taker,
                                         cap, qty):
        """An account's plain order, then its reduce-only one a tick worse: a taker asks
        fillable with the account's cap (its plain order's fills count against it)."""
        self.add(side, price, first, account, 0, False)
        self.add(side, price - side, second, account, 0, True)
        self.both("fillable", -side, price - 2 * side, qty, taker, 0, {account: cap})
        self.both("match", -side, price - 2 * side, qty, taker, 0)

    @rule(data=st.data())
    def cancel(self, data):
        self.both("cancel", data.draw(st.sampled_from(self.live_ids())))

    @rule(data=st.data(), leaves=st.integers(0, 9))
    def reduce(self, data, leaves):
        self.both("reduce", data.draw(st.sampled_from(self.live_ids())), leaves)

    @rule(side=sides, n=st.integers(0, 12))
    def read(self, side, n):
        self.both("depth", side, n)
        self.both("orders", side)

    @invariant()
    def same_changes_and_best_prices(self):
        assert self.fast.changes() == self.slow.changes()
        assert (self.fast.best_bid(), self.fast.best_ask()) == \
            (self.slow.best_bid(), self.slow.best_ask())
        assert len(self.fast) == len(self.slow)


BookApisAgree.TestCase.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestBookApisAgree = BookApisAgree.TestCase


def test_compiled_book_refuses_bad_direct_calls():
    """The book's own checks: bad side, crossing add, duplicate id, bad reduce."""
    book = OrderBook()
    book.add(1, 1, -1, 1000, 5)
    with pytest.raises(ValueError):
        book.add(2, 1, 0, 1000, 5)
    with pytest.raises(ValueError):
        book.add(2, 1, 1, 1000, 5)            # would cross
    with pytest.raises(ValueError):
        book.add(1, 1, -1, 1001, 5)           # id already resting
    with pytest.raises(ValueError):
        book.reduce(1, 5)
    with pytest.raises(KeyError):
        book.reduce(99, 1)
    assert book.cancel(99) == 0
    with pytest.raises(ValueError):
        book.add(3, 1, -1, 1000 + (1 << 21), 5)   # too far from the rest of the book
    for huge in ((1 << 62) + 1000, (1 << 61) + 1000, (1 << 63) - 1, -5):
        assert not book.can_hold(huge)
        with pytest.raises(ValueError):
            book.add(4, 1, -1, huge, 5)
    for bad_side in (0, 2, -2):
        with pytest.raises(ValueError):
            book.match(bad_side, 1, 5, 2, 0)
        with pytest.raises(ValueError):
            book.fillable(bad_side, 1, 5, 2, 0)
        with pytest.raises(ValueError):
            book.would_take(bad_side, 1)
        with pytest.raises(ValueError):
            book.depth(bad_side, 5)
        with pytest.raises(ValueError):
            book.orders(bad_side)
    assert book.orders(-1) == [(1, 1, 1000, 5, 0)]
    book.check_invariants()


def test_match_stops_before_a_reduce_only_maker_until_passed():
    """A walk stops before a reduce-only ask (the tuple names it and the taker's remaining);
    passed, it fills that ask once: its iceberg's next tranche stops the walk again."""
    book = OrderBook(check_invariants=True)
    book.add(1, 7, -1, 1000, 2)
    book.add(2, 8, -1, 1000, 6, 2, True)           # reduce-only iceberg showing 2
    book.add(3, 7, -1, 1000, 3)
    halt = (4, 2, 8, 1000, 8, 6)
    assert book.match(1, 1000, 10, 9, 0) == [(0, 1, 7, 1000, 2, 0), halt]
    assert book.match(1, 1000, 8, 9, 0, 2) == [(0, 2, 8, 1000, 2, 4), (0, 3, 7, 1000, 3, 0),
                                                (4, 2, 8, 1000, 3, 4)]
    assert book.match(1, 1000, 3, 8, 1) == [(1, 2, 8, 1000, 4, 0)]   # own: STP, no stop
    assert len(book) == 0


def test_fillable_counts_reduce_only_makers_up_to_their_accounts_cap():
    """Account 8 holds 4 to close: its plain ask of 3 and then its reduce-only ask of 4
    leave 1 for the latter, so 4 lots fill and 5 do not; without a cap it counts nothing."""
    book = OrderBook()
    book.add(1, 8, -1, 1000, 3)
    book.add(2, 8, -1, 1001, 4, 0, True)
    assert book.fillable(1, 1001, 4, 9, 0, {8: 4})
    assert not book.fillable(1, 1001, 5, 9, 0, {8: 4})
    assert not book.fillable(1, 1001, 4, 9, 0)
    assert book.fillable(1, 1001, 3, 9, 0)


def test_empty_compiled_book_moves_to_any_price():
    """Once empty, the book re-centres anywhere: far prices are fine again."""
    book = OrderBook(check_invariants=True)
    book.add(1, 1, -1, 1000, 5)
    assert not book.can_hold(1000 + (1 << 21))
    book.cancel(1)
    book.changes()
    assert book.can_hold(1000 + (1 << 21))
    book.add(2, 1, -1, 1000 + (1 << 21), 5)
    assert book.depth(-1, 1) == [(1000 + (1 << 21), 5, 1)]


def test_best_price_finds_a_far_level_after_the_touch_empties():
    """With one stale order far from the touch, emptying the touch finds it again."""
    book = OrderBook(check_invariants=True)
    book.add(1, 9, 1, 900, 1)
    book.add(2, 9, -1, 900_000, 1)
    for i in range(3):
        book.add(10 + i, 1, 1, 500_000 + i, 1)
        book.add(20 + i, 1, -1, 500_100 - i, 1)
    for i in range(3):
        book.cancel(12 - i)
        book.cancel(22 - i)
    assert (book.best_bid(), book.best_ask()) == (900, 900_000)
    assert book.depth(1, 5) == [(900, 1, 1)] and book.depth(-1, 5) == [(900_000, 1, 1)]
