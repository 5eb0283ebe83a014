"""clearing.marks: smoothed marks over the index, and the settlement price tiers."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from clearing.marks import Mark, MarkParams, impact_cost
from clearing.messages import Deposit, MarkStep
from clearing.settlement import delivery_average, settlement_price
from composed import PROVIDERS, Venue
from engine.contracts import Product
from engine.messages import Side

ALPHA = MarkParams(half_life_steps=10).alpha_nano


def settled(settlement: int, index: int) -> Mark:
    """A mark just after a settlement at ``settlement`` with the index at ``index``."""
    mark = Mark(settlement)
    mark.anchor(settlement, index)
    return mark


def test_the_basis_closes_half_the_gap_in_one_half_life():
    """Index 2.000, settled at 2.000, book mid 2.100: after 10 steps the mark is 2.050."""
    mark = settled(2000, 2000)
    for _ in range(10):
        price = mark.step(ALPHA, index=2000, bid=2090, ask=2110, settlement=2000)
    assert price == 2050
    for _ in range(200):
        price = mark.step(ALPHA, index=2000, bid=2090, ask=2110, settlement=2000)
    assert price == 2100


def test_one_quote_moves_the_mark_by_at_most_alpha_of_the_gap():
    """A spoofed mid of 3.000 for one step moves a 2.000 mark by about 7% of the gap (alpha)."""
    mark = settled(2000, 2000)
    moved = mark.step(ALPHA, index=2000, bid=2999, ask=3001, settlement=2000) - 2000
    assert moved == round(1000 * ALPHA / 10**9) == 67


def test_the_mark_follows_the_index_at_a_steady_basis():
    """The basis is kept over the index: the index moving moves the mark one for one."""
    mark = settled(2100, 2000)          # settled 0.100 over the index
    assert mark.step(ALPHA, index=2000, bid=2095, ask=2105, settlement=2100) == 2100
    assert mark.step(ALPHA, index=2050, bid=2145, ask=2155, settlement=2100) == 2150


@pytest.mark.parametrize("bid, ask", [(None, 2100), (2090, None), (None, None)])
def test_a_one_sided_book_holds_the_basis_and_the_mark_follows_the_index(bid, ask):
    """Marked 0.050 over a 2.000 index; the bids are pulled and the index falls to 1.800:
    the mark is 1.850, not the last settlement (pulling quotes would hide a loss)."""
    mark = settled(2050, 2000)
    assert mark.step(ALPHA, index=1800, bid=bid, ask=ask, settlement=2050) == 1850


@pytest.mark.parametrize("index, bid, ask", [(None, 2090, 2110), (2000, None, 2110)])
def test_no_index_or_no_basis_yet_falls_back_to_the_settlement(index, bid, ask):
    """Without an index there is nothing to add a basis to; a contract never two-sided and
    never settled with an index has no basis yet."""
    mark = Mark(2000)
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
    """Last trade 2.150 with the book's impact bid and ask at 2.100 / 2.120: settle at the
    ask, 2.120; impact prices between ticks clamp inward (2.0995 -> 2.100)."""
    assert settlement_price([], 2150, 2100, 2120, 2000, 2000) == (2120, "last_clamped")
    assert settlement_price([], 2050, 20995, 21200, 2000, 2000, impact_qty=10) == \
        (2100, "last_clamped")


def test_a_book_too_thin_for_impact_prices_leaves_the_mark():
    """Without both impact prices (the book is thinner than the impact quantity on a side)
    the last trade is not used: a one-lot quote pair, or an empty book, cannot set it."""
    assert settlement_price([], 2110, None, None, 2000, 2000) == (2000, "mark")
    assert settlement_price([], 2110, 2100, None, 2000, 2000) == (2000, "mark")


def test_a_vwap_needs_the_minimum_volume_and_stays_inside_the_book():
    """12 lots traded at 2.733 on average: below a 50-lot minimum they settle nothing (the
    last trade, clamped into a 2.090 / 2.110 book, does); above it they do, clamped into the
    book if it has impact prices, as they are if not."""
    trades = [(2310, 1), (2541, 1), (2795, 10)]
    assert settlement_price(trades, 2795, 2090, 2110, 2100, 2100, min_volume=50) == \
        (2110, "last_clamped")
    assert settlement_price(trades, 2795, 2090, 2110, 2100, 2100, min_volume=12) == \
        (2110, "vwap")
    assert settlement_price(trades, 2795, None, None, 2100, 2100, min_volume=12) == \
        (2733, "vwap")


def test_impact_costs_add_up_the_levels_a_quantity_walks():
    """10 lots against 2.100 x 4, 2.101 x 3, 2.105 x 5: 8400 + 6303 + 6315; 13 lots is more
    than the levels hold."""
    levels = [(2100, 4, 1), (2101, 3, 2), (2105, 5, 1)]
    assert impact_cost(levels, 10) == 21018
    assert impact_cost(levels, 12) == 8400 + 6303 + 5 * 2105
    assert impact_cost(levels, 13) is None and impact_cost([], 1) is None


def test_without_any_trade_the_mark_settles():
    assert settlement_price([], None, 2100, 2120, 2111, 2000) == (2111, "mark")


def test_bad_half_life_is_refused():
    with pytest.raises(ValueError):
        MarkParams(half_life_steps=0)


@given(st.integers(1000, 3000), st.lists(st.tuples(st.integers(1000, 3000),
                                                   st.integers(1, 50)), max_size=40))
def test_a_mark_never_overshoots_the_mids_it_has_seen(start, quotes):
    """The smoothed mark stays between the lowest and highest of the start and the mids seen."""
    mark = settled(start, start)
    seen = [start]
    for mid, half_spread in quotes:
        price = mark.step(ALPHA, index=start, bid=mid - half_spread, ask=mid + half_spread,
                          settlement=start)
        seen.append(mid)
        assert min(seen) - 1 <= price <= max(seen) + 1


def test_each_contract_is_marked_from_its_own_market_at_once():
    """A sloped curve: the class's reference (and index) is 2.100, December trades around
    1.993. Its first two-sided book sets its basis outright: marked 1.993, not 2.099 still
    creeping down by 7% of the gap a step."""
    december = Mark(2100)
    assert december.step(ALPHA, index=2100, bid=1990, ask=1996, settlement=2100) == 1993
    assert december.step(ALPHA, index=2100, bid=1990, ask=1996, settlement=2100) == 1993
    # From then on it is smoothed: a spoofed mid moves it by alpha of the gap only.
    assert december.step(ALPHA, index=2100, bid=2998, ask=3000, settlement=2100) == 1993 + 67


def test_a_settlement_anchors_the_mark_at_the_settlement_price():
    """Smoothed toward 2.150, settled at 2.120: the mark is 2.120 and its basis 0.020 over a
    2.100 index, so the index moving moves it one for one from there."""
    mark = settled(2000, 2000)
    for _ in range(5):
        mark.step(ALPHA, index=2100, bid=2145, ask=2155, settlement=2000)
    mark.anchor(2120, 2100)
    assert mark.price == 2120
    assert mark.step(ALPHA, index=2110, bid=2125, ask=2135, settlement=2120) == 2130


def test_the_delivery_average_counts_the_index_for_the_days_to_come():
    """31 days, fixed 2.100 x 10 and 2.200 x 5, index now 2.000: (21000 + 11000 + 16 x 2000)
    / 31 = 2064.516 -> 2.065; all fixed: the plain mean; none fixed: the index."""
    assert delivery_average([2100] * 10 + [2200] * 5, 31, 2000) == 2065
    assert delivery_average([2100] * 30 + [2131], 31, 5000) == 2101
    assert delivery_average([], 30, 2000) == 2000


def test_the_impact_quantity_is_as_many_gpu_hours_for_every_tenor():
    """10 lots of a month, week or 744 hours (7,440 GPU-hours) is 4 lots of a quarter and 1 of
    a year: a book as deep in GPU-hours gives a quarter and a year their mark, where 10 lots
    of a year (87,600 GPU-hours) would leave its mark at the settlement price for good."""
    p = MarkParams()
    assert [p.impact_lots(h) for h in (168, 672, 744, 2160, 2208, 8760, 8784)] == \
        [10, 10, 10, 4, 4, 1, 1]


def test_a_year_is_marked_from_a_book_one_lot_deep():
    """A year of 2028 whose book is 1 lot a side (8,784 GPU-hours) at 1.980 / 1.990, index
    2.100: the first mark step takes the impact mid, 1.985, as the mark at once."""
    v = Venue(symbols=("H100-2028",), product=Product(gpu_class="H100", reference_price=2100,
                                                      years=3))
    for provider in PROVIDERS:
        v.observe(provider, 2100)
    v.clear(Deposit, account_id=2, amount=10**12)
    v.place(2, Side.BUY, 1, 1980, symbol="H100-2028")
    v.place(2, Side.SELL, 1, 1990, symbol="H100-2028")
    v.clear(MarkStep)
    assert v.house.marks["H100-2028"].price == 1985
