"""clearing.marks: smoothed marks over the index, and the settlement price tiers."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from clearing.marks import Mark, MarkParams, settlement_price

ALPHA = MarkParams(half_life_steps=10).alpha_nano


def test_the_basis_closes_half_the_gap_in_one_half_life():
    """Index 2.000, settled at 2.000, book mid 2.100: after 10 steps the mark is 2.050."""
    mark = Mark(settlement=2000, index=2000)
    for _ in range(10):
        price = mark.step(ALPHA, index=2000, bid=2090, ask=2110, settlement=2000)
    assert price == 2050
    for _ in range(200):
        price = mark.step(ALPHA, index=2000, bid=2090, ask=2110, settlement=2000)
    assert price == 2100


def test_one_quote_moves_the_mark_by_at_most_alpha_of_the_gap():
    """A spoofed mid of 3.000 for one step moves a 2.000 mark by about 7% of the gap (alpha)."""
    mark = Mark(settlement=2000, index=2000)
    moved = mark.step(ALPHA, index=2000, bid=2999, ask=3001, settlement=2000) - 2000
    assert moved == round(1000 * ALPHA / 10**9) == 67


def test_the_mark_follows_the_index_at_a_steady_basis():
    """The basis is kept over the index: the index moving moves the mark one for one."""
    mark = Mark(settlement=2100, index=2000)          # settled 0.100 over the index
    assert mark.step(ALPHA, index=2000, bid=2095, ask=2105, settlement=2100) == 2100
    assert mark.step(ALPHA, index=2050, bid=2145, ask=2155, settlement=2100) == 2150


@pytest.mark.parametrize("index, bid, ask", [(2000, None, 2100), (2000, 2090, None),
                                             (2000, None, None), (None, 2090, 2110)])
def test_a_one_sided_book_or_no_index_falls_back_to_the_settlement(index, bid, ask):
    mark = Mark(settlement=2000, index=2000)
    assert mark.step(ALPHA, index=index, bid=bid, ask=ask, settlement=2123) == 2123


def test_settlement_is_the_closing_window_vwap_rounded_to_the_tick():
    """(2.100 x 3 + 2.110 x 1) / 4 = 2.1025 -> 2.102 (rounded to the nearer tick)."""
    assert settlement_price([(2100, 3), (2110, 1)], 2110, 2100, 2105, 2000, 2000) == \
        (2102, "vwap")


def test_a_vwap_exactly_between_two_ticks_goes_toward_the_previous_settlement():
    """2.1005 is between 2.100 and 2.101: up if the last settlement was higher, else down."""
    trades = [(2100, 1), (2101, 1)]
    assert settlement_price(trades, None, None, None, 2000, previous=2200)[0] == 2101
    assert settlement_price(trades, None, None, None, 2000, previous=2000)[0] == 2100


def test_without_trades_in_the_window_the_last_trade_is_clamped_into_the_book():
    """Last trade 2.150 with the book at 2.100 / 2.120: settle at the ask, 2.120."""
    assert settlement_price([], 2150, 2100, 2120, 2000, 2000) == (2120, "last_trade")
    assert settlement_price([], 2050, 2100, 2120, 2000, 2000) == (2100, "last_trade")
    assert settlement_price([], 2110, None, None, 2000, 2000) == (2110, "last_trade")


def test_without_any_trade_the_mark_settles():
    assert settlement_price([], None, 2100, 2120, 2111, 2000) == (2111, "mark")


def test_bad_half_life_is_refused():
    with pytest.raises(ValueError):
        MarkParams(half_life_steps=0)


@given(st.integers(1000, 3000), st.lists(st.tuples(st.integers(1000, 3000),
                                                   st.integers(1, 50)), max_size=40))
def test_a_mark_never_overshoots_the_mids_it_has_seen(start, quotes):
    """The smoothed mark stays between the lowest and highest of the start and the mids seen."""
    mark = Mark(settlement=start, index=start)
    seen = [start]
    for mid, half_spread in quotes:
        price = mark.step(ALPHA, index=start, bid=mid - half_spread, ask=mid + half_spread,
                          settlement=start)
        seen.append(mid)
        assert min(seen) - 1 <= price <= max(seen) + 1
