"""clearing.exposure: the incremental margin equals the reference computation, always."""
from __future__ import annotations

import datetime

import msgspec
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from clearing.exposure import Exposure
from clearing.margin import MarginParams, make_leg, requirement

TODAY = datetime.date(2027, 1, 15)
PARAMS = {"H100": MarginParams(), "A100": MarginParams(spread_charge_bps=500,
                                                        initial_multiplier_pct=125)}
D = datetime.date


def _leg(symbol, price, start, end):
    return make_leg(symbol[:4], 1000, price, start, end, TODAY, PARAMS[symbol[:4]])


LEGS = {   # months, a quarter and a year that overlap them, and a week across two months
    "H100-2027-02": _leg("H100", 2080, D(2027, 2, 1), D(2027, 3, 1)),
    "H100-2027-03": _leg("H100", 2100, D(2027, 3, 1), D(2027, 4, 1)),
    "H100-2027-09": _leg("H100", 2200, D(2027, 9, 1), D(2027, 10, 1)),
    "H100-2027-Q1": _leg("H100", 2050, D(2027, 1, 1), D(2027, 4, 1)),
    "H100-2027": _leg("H100", 2150, D(2027, 1, 1), D(2028, 1, 1)),
    "H100-2027-W13": _leg("H100", 2120, D(2027, 3, 29), D(2027, 4, 5)),
    "A100-2027-03": _leg("A100", 1200, D(2027, 3, 1), D(2027, 4, 1)),
}
symbols = st.sampled_from(sorted(LEGS))
sides = st.sampled_from([1, -1])


class IncrementalEqualsReference(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.legs = dict(LEGS)
        self.exposure = Exposure(self.legs, PARAMS)
        self.positions: dict[str, int] = {}
        self.orders: list[list] = []          # [symbol, side, lots, price]

    def reference(self, extra=()):
        return requirement(self.legs, self.positions,
                           [tuple(o) for o in self.orders] + list(extra), PARAMS)

    @rule(symbol=symbols, lots=st.integers(-30, 30))
    def fill(self, symbol, lots):
        self.positions[symbol] = self.positions.get(symbol, 0) + lots
        self.exposure.fill(symbol, lots)

    @rule(symbol=symbols, side=sides, lots=st.integers(1, 30), offset=st.integers(-50, 50))
    def add_order(self, symbol, side, lots, offset):
        price = LEGS[symbol].price + offset
        self.orders.append([symbol, side, lots, price])
        self.exposure.order(symbol, side, lots, price)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def shrink_order(self, data):
        """An order fills in part into the position, or is cancelled in part or whole."""
        i = data.draw(st.integers(0, len(self.orders) - 1))
        symbol, side, lots, price = self.orders[i]
        gone = data.draw(st.integers(1, lots))
        self.exposure.order(symbol, side, -gone, price)
        if data.draw(st.booleans()):
            self.positions[symbol] = self.positions.get(symbol, 0) + side * gone
            self.exposure.fill(symbol, side * gone)
        if gone == lots:
            del self.orders[i]
        else:
            self.orders[i][2] = lots - gone

    @rule(symbol=symbols, offset=st.integers(-400, 400))
    def new_mark(self, symbol, offset):
        """The mark moves (the scanning range, from the settlement price, does not)."""
        self.legs[symbol] = msgspec.structs.replace(self.legs[symbol],
                                                    mark=LEGS[symbol].price + offset)
        self.exposure.remark(symbol)

    @invariant()
    def margin_is_the_references(self):
        assert self.exposure.margin() == self.reference()

    @rule(symbol=symbols, side=sides, lots=st.integers(1, 40), offset=st.integers(-50, 50))
    def what_if(self, symbol, side, lots, offset):
        price = LEGS[symbol].price + offset
        before = self.exposure.margin()
        assert self.exposure.initial_with(symbol, side, lots, price) == \
            self.reference([(symbol, side, lots, price)])[1]
        assert self.exposure.margin() == before


TestIncrementalEqualsReference = IncrementalEqualsReference.TestCase
TestIncrementalEqualsReference.settings = settings(max_examples=150, stateful_step_count=50,
                                                   deadline=None)


def test_an_order_in_the_dearest_leg_prices_the_spread_charge():
    """Short 5 Sep (the dearest leg), long 5 Mar, short 3 Feb, bid for 20 Mar; a bid for 5
    Sep keeps September in play, so the spread charge stays on its price."""
    exposure = Exposure(LEGS, PARAMS)
    positions = {"H100-2027-09": -5, "H100-2027-03": 5, "H100-2027-02": -3}
    for symbol, lots in positions.items():
        exposure.fill(symbol, lots)
    bid = ("H100-2027-03", 1, 20, 2100)
    exposure.order(*bid)
    order = ("H100-2027-09", 1, 5, 2200)
    expected = requirement(LEGS, positions, [bid, order], PARAMS)[1]
    assert exposure.initial_with(*order) == expected
    exposure.order(*order)
    assert exposure.margin()[1] == expected
