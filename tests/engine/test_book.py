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
          display=st.one_of(st.just(0), st.integers(1, 4)))
    def add(self, side, price, qty, account, display):
        if self.both("can_hold", price):          # callers check first; add refuses too
            self.both("add", self.next_id, account, side, price, qty, display)
        else:
            with pytest.raises(ValueError):
                self.fast.add(self.next_id, account, side, price, qty, display)
        self.next_id += 1

    @rule(side=sides, price=prices, qty=st.integers(1, 30), account=accounts, stp=stps)
    def match(self, side, price, qty, account, stp):
        self.both("fillable", side, price, qty, account, stp)
        self.both("match", side, price, qty, account, stp)

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
