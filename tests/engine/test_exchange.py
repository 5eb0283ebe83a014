"""The matching rules, one class per rule, each run on the compiled and the reference book."""
from __future__ import annotations

import msgspec
import pytest

from harness import (
    BUY, FOK, GTD, IOC, SELL, SYMBOL, T0, Harness, cancelled, instrument, levels, of,
    rejected, table, trades,
)
from engine.book import OrderBook
from engine.exchange import Exchange
from engine.messages import (
    BookLevelChanged, CancelAll, InstrumentStatus, InstrumentStatusChanged, OrderAccepted,
    OrderDuplicate, OrderExpired, OrderReduced, OrderReplaced, OrderStatus, OrderTriggered,
    OrderType, PlaceOrder, RejectReason, ReplaceOrder, SelfTradePrevention, SetInstrumentStatus, SetReferencePrice, Trade,
)

SEC = 10**9
DAY = 86_400 * SEC


class TestPriceTimePriority:
    """Better price first; at one price, earlier first; the maker's price is the trade price."""

    def test_earlier_order_at_same_price_fills_first(self, ex):
        """Two asks at 1002: the older one fills before the newer one."""
        first, second = ex.load("""
            bid  price  ask
                  1002    3
                  1002    4
        """)
        events = ex.place(BUY, 1002, 5, account=1)
        assert [(t.maker_order_id, t.qty) for t in of(Trade, events)] == [(first, 3), (second, 2)]
        assert ex.ladder() == table("""
            bid  price  ask
                  1002    2
        """)

    def test_better_price_fills_first_whatever_its_age(self, ex):
        """A newer ask at 1001 fills before an older ask at 1002."""
        ex.load("""
            bid  price  ask
                  1002    3
                  1001    3
        """)
        events = ex.place(BUY, 1002, 4)
        assert trades(events) == [(1001, 3), (1002, 1)]

    def test_trade_price_is_the_resting_orders_price(self, ex):
        """A buy limit at 1010 against an ask at 1003 trades at 1003."""
        ex.load("""
            bid  price  ask
                  1003    5
        """)
        assert trades(ex.place(BUY, 1010, 2)) == [(1003, 2)]

    def test_partial_fill_rests_remainder_with_fill_reported(self, ex):
        """A buy of 7 against 4 offered takes the 4 and rests 3 as the best bid."""
        ex.load("""
            bid  price  ask
                  1002    4
        """)
        events = ex.place(BUY, 1002, 7)
        taker = ex.accepted_id(events)
        assert trades(events) == [(1002, 4)]
        order = ex.ex.order(taker)
        assert (order.status, order.filled_qty, order.leaves_qty) == \
            (OrderStatus.PARTIALLY_FILLED, 4, 3)
        assert ex.ladder() == table("""
            bid  price  ask
              3   1002
        """)

    def test_aggressor_and_leaves_are_on_every_trade(self, ex):
        """Trades carry the taker's side and both sides' leaves after the fill."""
        (maker,) = ex.load("""
            bid  price  ask
              6   1000
        """)
        (t,) = of(Trade, ex.place(SELL, 999, 4, account=2))
        assert (t.aggressor, t.maker_order_id, t.maker_leaves, t.taker_leaves) == \
            (SELL, maker, 2, 0)
        assert t.trade_id == 1


class TestImmediateOrCancel:
    """IOC takes what it can at its limit and cancels the rest."""

    def test_ioc_buy_sweeps_two_levels_then_cancels_rest(self, ex):
        """An IOC buy takes both ask levels up to its limit and cancels the remainder."""
        ex.load("""
            bid  price  ask
                  1003    5
                  1002    4
              7   1000
        """)
        events = ex.place(BUY, 1003, 12, tif=IOC)
        taker = ex.accepted_id(events)
        assert trades(events) == [(1002, 4), (1003, 5)]
        assert cancelled(events) == [(taker, "IOC_REMAINDER", 3)]
        assert ex.ladder() == table("""
            bid  price  ask
              7   1000
        """)

    def test_ioc_with_nothing_to_take_is_cancelled_whole(self, ex):
        """An IOC that crosses nothing is accepted and cancelled whole; the book is unchanged."""
        events = ex.place(BUY, 1000, 5, tif=IOC)
        assert cancelled(events) == [(ex.accepted_id(events), "IOC_REMAINDER", 5)]
        assert levels(events) == []


class TestFillOrKill:
    """FOK fills completely at once or is rejected before any fill."""

    def test_fok_fills_completely_across_levels(self, ex):
        """A FOK for 9 against 4 + 5 offered fills all 9."""
        ex.load("""
            bid  price  ask
                  1003    5
                  1002    4
        """)
        assert trades(ex.place(BUY, 1003, 9, tif=FOK)) == [(1002, 4), (1003, 5)]

    def test_fok_short_by_one_is_rejected_and_changes_nothing(self, ex):
        """A FOK for 10 against 9 offered is rejected and the book keeps both levels."""
        ex.load("""
            bid  price  ask
                  1003    5
                  1002    4
        """)
        before = ex.ladder()
        events = ex.place(BUY, 1003, 10, tif=FOK)
        assert rejected(events) == ["FOK_NOT_FILLABLE"]
        assert trades(events) == [] and levels(events) == []
        assert ex.ladder() == before

    def test_fok_counts_iceberg_reserve(self, ex):
        """An iceberg's hidden reserve counts toward a FOK at its price."""
        ex.place(SELL, 1002, 10, account=9, display_qty=2)
        assert trades(ex.place(BUY, 1002, 10, tif=FOK)) == [(1002, 2)] * 5

    def test_fok_blocked_by_own_resting_order(self, ex):
        """A FOK that would meet its own ask before filling is rejected (cancel-newest)."""
        ex.place(SELL, 1001, 2, account=1)
        ex.place(SELL, 1002, 5, account=2)
        assert rejected(ex.place(BUY, 1002, 3, account=1, tif=FOK)) == ["FOK_NOT_FILLABLE"]

    def test_fok_skips_own_order_under_cancel_oldest(self, ex):
        """With cancel-oldest the own ask is cancelled and the FOK fills from the next one."""
        own = ex.accepted_id(ex.place(SELL, 1001, 2, account=1))
        ex.place(SELL, 1002, 5, account=2)
        events = ex.place(BUY, 1002, 3, account=1, tif=FOK,
                          stp=SelfTradePrevention.CANCEL_OLDEST)
        assert cancelled(events) == [(own, "SELF_TRADE", 2)]
        assert trades(events) == [(1002, 3)]


class TestMarketOrders:
    """A market order takes liquidity inside the price band and never rests."""

    def test_market_buy_fills_and_cancels_remainder(self, ex):
        """A market buy for 6 against 4 offered fills 4; the rest is cancelled."""
        ex.load("""
            bid  price  ask
                  1005    4
        """)
        events = ex.place(BUY, None, 6)
        assert trades(events) == [(1005, 4)]
        assert cancelled(events) == [(ex.accepted_id(events), "IOC_REMAINDER", 2)]

    def test_market_order_stops_at_band_edge(self, ex):
        """Asks at 1100 (band edge) fill, an ask at 1150 is beyond the band and stays."""
        ex.load("""
            bid  price  ask
                  1100    1
        """)
        ex.ex.process(SetReferencePrice(ts_ns=ex.tick(), symbol=SYMBOL, price=1100))
        ex.place(SELL, 1150, 1, account=9)   # inside the new band 990..1210
        ex.ex.process(SetReferencePrice(ts_ns=ex.tick(), symbol=SYMBOL, price=1000))
        events = ex.place(BUY, None, 5)
        assert trades(events) == [(1100, 1)]
        assert ex.ex.markets[SYMBOL].book.best_ask() == 1150

    def test_market_order_on_empty_side_is_rejected(self, ex):
        """A market sell with no bids is rejected with no_liquidity."""
        assert rejected(ex.place(SELL, None, 1)) == ["NO_LIQUIDITY"]

    def test_market_order_with_price_is_rejected(self, ex):
        """A market order that names a price is invalid."""
        events = ex.place(BUY, 1000, 1, order_type=OrderType.MARKET)
        assert rejected(events) == ["INVALID_PARAMS"]
        assert events[0].field == "price"


class TestPostOnly:
    """A post-only order adds liquidity or is rejected."""

    def test_post_only_that_would_take_is_rejected(self, ex):
        """A post-only bid at the best ask is rejected and nothing trades."""
        ex.load("""
            bid  price  ask
                  1002    4
        """)
        assert rejected(ex.place(BUY, 1002, 1, post_only=True)) == ["POST_ONLY_WOULD_TAKE"]

    def test_post_only_below_the_ask_rests(self, ex):
        """A post-only bid below the best ask rests."""
        ex.load("""
            bid  price  ask
                  1002    4
        """)
        ex.place(BUY, 1001, 2, post_only=True)
        assert ex.ladder() == table("""
            bid  price  ask
                  1002    4
              2   1001
        """)

    def test_post_only_with_ioc_is_invalid(self, ex):
        """post_only with an immediate time in force is a contradiction."""
        assert rejected(ex.place(BUY, 1001, 2, post_only=True, tif=IOC)) == ["INVALID_PARAMS"]


class TestGoodTillDate:
    """A GTD order rests until its expire_at and then expires."""

    def test_gtd_expires_on_timer(self, ex):
        """A timer at expire_at expires the order and removes its level."""
        expire = ex.ts + 60 * SEC
        order_id = ex.accepted_id(ex.place(BUY, 1000, 3, tif=GTD, expire_at_ns=expire))
        assert of(OrderExpired, ex.timer(expire - 1)) == []
        events = ex.timer(expire)
        assert [(e.order_id, e.qty) for e in of(OrderExpired, events)] == [(order_id, 3)]
        assert levels(events) == [(1, 1000, 0, 0)]
        assert ex.ex.order(order_id).status is OrderStatus.EXPIRED

    def test_expired_order_does_not_trade_with_a_later_command(self, ex):
        """A command stamped after expire_at sees the order gone before it matches."""
        expire = ex.ts + 60 * SEC
        ex.place(BUY, 1000, 3, tif=GTD, expire_at_ns=expire)
        ex.ts = expire + 5
        events = ex.place(SELL, 1000, 1, account=2)
        assert of(OrderExpired, events) and trades(events) == []

    def test_cancelled_gtd_orders_do_not_pile_up(self, ex):
        """Many far-future GTD orders placed and cancelled leave little behind; one live one expires."""
        far = ex.ts + 30 * DAY
        keep = ex.accepted_id(ex.place(BUY, 990, 1, tif=GTD, expire_at_ns=ex.ts + 10 * SEC))
        for _ in range(500):
            ex.cancel(ex.accepted_id(ex.place(BUY, 1000, 1, tif=GTD, expire_at_ns=far)))
        assert len(ex.ex._expiries) < 100
        events = ex.timer(ex.ts + 10 * SEC)
        assert [e.order_id for e in of(OrderExpired, events)] == [keep]

    def test_gtd_in_the_past_is_rejected(self, ex):
        """An expire_at at or before the command's time is invalid."""
        events = ex.place(BUY, 1000, 3, tif=GTD, expire_at_ns=T0)
        assert rejected(events) == ["INVALID_PARAMS"] and events[0].field == "expire_at"

    def test_expire_at_without_gtd_is_rejected(self, ex):
        """expire_at with tif gtc is invalid rather than ignored."""
        assert rejected(ex.place(BUY, 1000, 3, expire_at_ns=T0 + SEC)) == ["INVALID_PARAMS"]


class TestStops:
    """Stop orders wait for the last trade price to reach stop_price, then work."""

    def trade_at(self, ex, price):
        ex.place(SELL, price, 1, account=7)
        ex.place(BUY, price, 1, account=8)

    def test_buy_stop_market_triggers_when_last_reaches_stop(self, ex):
        """A buy stop at 1005 waits at last 1000 and fires when a trade prints at 1005."""
        self.trade_at(ex, 1000)
        stop = ex.accepted_id(ex.place(BUY, None, 2, order_type=OrderType.STOP_MARKET,
                                       stop_price=1005))
        assert ex.ex.order(stop).status is OrderStatus.UNTRIGGERED
        ex.place(SELL, 1007, 5, account=9)
        ex.place(SELL, 1005, 1, account=7)
        events = ex.place(BUY, 1005, 1, account=8)       # prints 1005
        assert [e.order_id for e in of(OrderTriggered, events)] == [stop]
        assert trades(events) == [(1005, 1), (1007, 2)]
        assert ex.ex.order(stop).status is OrderStatus.FILLED

    def test_sell_stop_limit_rests_after_trigger(self, ex):
        """A sell stop-limit at stop 995, limit 994 rests at 994 once 995 trades."""
        self.trade_at(ex, 1000)
        stop = ex.accepted_id(ex.place(SELL, 994, 3, order_type=OrderType.STOP_LIMIT,
                                       stop_price=995))
        self.trade_at(ex, 995)
        assert ex.ex.order(stop).status is OrderStatus.OPEN
        assert ex.ladder() == table("""
            bid  price  ask
                   994    3
        """)

    def test_stop_already_reached_is_rejected(self, ex):
        """A buy stop at or below the last trade would fire at once: rejected."""
        self.trade_at(ex, 1000)
        events = ex.place(BUY, None, 1, order_type=OrderType.STOP_MARKET, stop_price=1000)
        assert rejected(events) == ["STOP_WOULD_TRIGGER"]

    def test_stops_cascade_in_order_id_order(self, ex):
        """One trade fires a stop whose own trade fires the next one."""
        self.trade_at(ex, 1000)
        first = ex.accepted_id(ex.place(BUY, None, 1, order_type=OrderType.STOP_MARKET,
                                        stop_price=1002, account=3))
        second = ex.accepted_id(ex.place(BUY, None, 1, order_type=OrderType.STOP_MARKET,
                                         stop_price=1004, account=4))
        ex.place(SELL, 1006, 1, account=9)
        ex.place(SELL, 1004, 1, account=9)
        ex.place(SELL, 1002, 1, account=7)
        events = ex.place(BUY, 1002, 1, account=8)
        assert [e.order_id for e in of(OrderTriggered, events)] == [first, second]
        assert trades(events) == [(1002, 1), (1004, 1), (1006, 1)]

    def test_cancel_untriggered_stop(self, ex):
        """An untriggered stop can be cancelled and then never fires."""
        self.trade_at(ex, 1000)
        stop = ex.accepted_id(ex.place(BUY, None, 1, order_type=OrderType.STOP_MARKET,
                                       stop_price=1002))
        assert cancelled(ex.cancel(stop)) == [(stop, "USER", 1)]
        self.trade_at(ex, 1003)
        assert of(OrderTriggered, ex.events) == []

    def test_stop_without_stop_price_is_rejected(self, ex):
        """A stop order needs stop_price."""
        events = ex.place(BUY, None, 1, order_type=OrderType.STOP_MARKET)
        assert rejected(events) == ["INVALID_PARAMS"] and events[0].field == "stop_price"


class TestIceberg:
    """An iceberg shows display_qty; each new tranche joins the back of its level."""

    def test_iceberg_shows_only_its_display_qty(self, ex):
        """An ask of 10 showing 3 appears as 3 on the ladder."""
        ex.place(SELL, 1002, 10, account=9, display_qty=3)
        assert ex.ladder() == table("""
            bid  price  ask
                  1002    3
        """)

    def test_replenished_tranche_loses_priority(self, ex):
        """After its tranche is taken, the iceberg queues behind an order that came later."""
        iceberg = ex.accepted_id(ex.place(SELL, 1002, 10, account=9, display_qty=3))
        later = ex.accepted_id(ex.place(SELL, 1002, 2, account=8))
        events = ex.place(BUY, 1002, 4)
        assert [(t.maker_order_id, t.qty) for t in of(Trade, events)] == \
            [(iceberg, 3), (later, 1)]
        assert [o[0] for o in ex.ex.markets[SYMBOL].book.orders(-1)] == [later, iceberg]
        assert ex.ladder() == table("""
            bid  price  ask
                  1002    4
        """)

    def test_iceberg_display_not_below_qty_is_rejected(self, ex):
        """display_qty must be smaller than qty."""
        assert rejected(ex.place(SELL, 1002, 3, display_qty=3)) == ["INVALID_QUANTITY"]


class TestSelfTradePrevention:
    """The taker's mode decides what happens when it meets its own resting order."""

    def setup_own_ask(self, ex):
        return ex.accepted_id(ex.place(SELL, 1002, 5, account=1))

    def test_cancel_newest_cancels_the_taker(self, ex):
        """The incoming buy is cancelled; the resting ask stays."""
        own = self.setup_own_ask(ex)
        events = ex.place(BUY, 1002, 3, account=1)
        assert cancelled(events) == [(ex.accepted_id(events), "SELF_TRADE", 3)]
        assert ex.ex.order(own).leaves_qty == 5 and trades(events) == []

    def test_cancel_oldest_cancels_resting_and_taker_rests(self, ex):
        """The resting ask is cancelled and the buy rests in its place."""
        own = self.setup_own_ask(ex)
        events = ex.place(BUY, 1002, 3, account=1, stp=SelfTradePrevention.CANCEL_OLDEST)
        assert cancelled(events) == [(own, "SELF_TRADE", 5)]
        assert ex.ladder() == table("""
            bid  price  ask
              3   1002
        """)

    def test_cancel_both(self, ex):
        """Both the resting ask and the buy are cancelled."""
        own = self.setup_own_ask(ex)
        events = ex.place(BUY, 1002, 3, account=1, stp=SelfTradePrevention.CANCEL_BOTH)
        assert cancelled(events) == [(own, "SELF_TRADE", 5),
                                     (ex.accepted_id(events), "SELF_TRADE", 3)]
        assert ex.ladder() == "bid  price  ask"

    def test_decrement_reduces_larger_and_cancels_smaller(self, ex):
        """Buy 3 against own ask 5: the buy is cancelled, the ask reduced to 2, no trade."""
        own = self.setup_own_ask(ex)
        events = ex.place(BUY, 1002, 3, account=1, stp=SelfTradePrevention.DECREMENT)
        taker = ex.accepted_id(events)
        assert trades(events) == []
        assert [(e.order_id, e.qty, e.leaves) for e in of(OrderReduced, events)] == [(own, 3, 2)]
        assert cancelled(events) == [(taker, "SELF_TRADE", 3)]
        assert ex.ladder() == table("""
            bid  price  ask
                  1002    2
        """)

    def test_decrement_then_trade_with_others(self, ex):
        """Buy 8 meets own ask 5 (cancelled, buy reduced to 3), then trades 3 with another."""
        own = self.setup_own_ask(ex)
        ex.place(SELL, 1002, 4, account=2)
        events = ex.place(BUY, 1002, 8, account=1, stp=SelfTradePrevention.DECREMENT)
        taker = ex.accepted_id(events)
        assert cancelled(events) == [(own, "SELF_TRADE", 5)]
        assert [(e.order_id, e.leaves) for e in of(OrderReduced, events)] == [(taker, 3)]
        assert trades(events) == [(1002, 3)]
        assert ex.ex.order(taker).status is OrderStatus.FILLED

    def test_other_accounts_trade_normally(self, ex):
        """Self-trade prevention only concerns one account's own orders."""
        ex.place(SELL, 1002, 5, account=1)
        assert trades(ex.place(BUY, 1002, 3, account=2)) == [(1002, 3)]


class TestPriceBand:
    """Limit prices must lie within the band around the last trade, else the reference."""

    def test_price_outside_band_is_rejected(self, ex):
        """1101 is above 1000 + 10%; 1100 is on the edge and accepted."""
        assert rejected(ex.place(BUY, 1101, 1)) == ["PRICE_OUT_OF_BAND"]
        assert rejected(ex.place(BUY, 1100, 1)) == []
        assert rejected(ex.place(SELL, 899, 1, account=2)) == ["PRICE_OUT_OF_BAND"]

    def test_band_follows_the_last_trade(self, ex):
        """After a trade at 1100 the band is 990..1210."""
        ex.place(SELL, 1100, 1, account=2)
        ex.place(BUY, 1100, 1)
        assert rejected(ex.place(SELL, 1210, 1, account=2)) == []
        assert rejected(ex.place(SELL, 1211, 1, account=2)) == ["PRICE_OUT_OF_BAND"]


class TestInstrumentStatus:
    """pre_open and halted take cancels only; closed cancels everything and takes nothing."""

    def set(self, ex, status):
        return ex.send(SetInstrumentStatus(ts_ns=ex.tick(), symbol=SYMBOL, status=status))

    def test_halted_refuses_orders_but_allows_cancels(self, ex):
        """During a halt a new order is refused and a resting one can be cancelled."""
        order_id = ex.accepted_id(ex.place(BUY, 1000, 1))
        assert [e.status for e in of(InstrumentStatusChanged, self.set(ex, InstrumentStatus.HALTED))] \
            == [InstrumentStatus.HALTED]
        assert rejected(ex.place(BUY, 1000, 1)) == ["INSTRUMENT_NOT_TRADING"]
        assert rejected(ex.replace(order_id, price=999)) == ["INSTRUMENT_NOT_TRADING"]
        assert cancelled(ex.cancel(order_id)) == [(order_id, "USER", 1)]
        self.set(ex, InstrumentStatus.OPEN)
        assert rejected(ex.place(BUY, 1000, 1)) == []

    def test_pre_open_refuses_orders(self, ex):
        """Before the open no order is taken."""
        self.set(ex, InstrumentStatus.PRE_OPEN)
        assert rejected(ex.place(BUY, 1000, 1)) == ["INSTRUMENT_NOT_TRADING"]

    def test_close_cancels_resting_and_untriggered_orders(self, ex):
        """Closing cancels every live order with reason instrument_closed, for good."""
        resting = ex.accepted_id(ex.place(BUY, 1000, 1))
        stop = ex.accepted_id(ex.place(SELL, None, 1, order_type=OrderType.STOP_MARKET,
                                       stop_price=990, account=2))
        events = self.set(ex, InstrumentStatus.CLOSED)
        assert sorted(cancelled(events)) == [(resting, "INSTRUMENT_CLOSED", 1),
                                             (stop, "INSTRUMENT_CLOSED", 1)]
        assert rejected(self.set(ex, InstrumentStatus.OPEN)) == ["INSTRUMENT_NOT_TRADING"]

    def test_last_trading_time_closes_the_instrument(self, ex):
        """A timer at the last trading time closes the instrument and cancels its orders."""
        resting = ex.accepted_id(ex.place(BUY, 1000, 1))
        events = ex.timer(ex.ex.markets[SYMBOL].instrument.last_trading_ns)
        assert cancelled(events) == [(resting, "INSTRUMENT_CLOSED", 1)]
        assert ex.ex.markets[SYMBOL].status is InstrumentStatus.CLOSED
        assert rejected(ex.place(BUY, 1000, 1)) == ["INSTRUMENT_NOT_TRADING"]


class TestClientOrderId:
    """Placing is idempotent per account by client_order_id (PROTOCOL.md, Orders)."""

    def test_repeat_with_same_parameters_places_nothing(self, ex):
        """The same order sent twice returns the first one as a duplicate."""
        first = ex.accepted_id(ex.place(BUY, 1000, 2, client_order_id="abc-1"))
        events = ex.place(BUY, 1000, 2, client_order_id="abc-1")
        assert [(type(e), e.order_id) for e in events] == [(OrderDuplicate, first)]
        assert len(ex.ex.markets[SYMBOL].book) == 1

    def test_repeat_of_a_filled_order_is_still_a_duplicate(self, ex):
        """A closed order keeps its client_order_id."""
        ex.place(SELL, 1000, 2, account=2)
        first = ex.accepted_id(ex.place(BUY, 1000, 2, client_order_id="abc-1"))
        assert ex.ex.order(first).status is OrderStatus.FILLED
        assert of(OrderDuplicate, ex.place(BUY, 1000, 2, client_order_id="abc-1"))

    def test_repeat_with_other_parameters_is_rejected(self, ex):
        """Same client_order_id, other price: duplicate_client_order_id, nothing placed."""
        ex.place(BUY, 1000, 2, client_order_id="abc-1")
        events = ex.place(BUY, 1001, 2, client_order_id="abc-1")
        assert rejected(events) == ["DUPLICATE_CLIENT_ORDER_ID"]
        assert len(ex.ex.markets[SYMBOL].book) == 1

    def test_other_account_may_use_the_same_id(self, ex):
        """client_order_id is per account."""
        ex.place(BUY, 1000, 2, client_order_id="abc-1", account=1)
        assert rejected(ex.place(BUY, 1000, 2, client_order_id="abc-1", account=2)) == []

    def test_rejected_order_does_not_reserve_its_id(self, ex):
        """A rejected order may be sent again, corrected, with the same client_order_id."""
        ex.place(BUY, 2000, 2, client_order_id="abc-1")
        assert rejected(ex.place(BUY, 1000, 2, client_order_id="abc-1")) == []

    def test_cancel_by_client_order_id(self, ex):
        """An order can be cancelled by its client_order_id."""
        order_id = ex.accepted_id(ex.place(BUY, 1000, 2, client_order_id="abc-1"))
        events = ex.cancel(None, client_order_id="abc-1")
        assert cancelled(events) == [(order_id, "USER", 2)]


class TestReplace:
    """Lower qty at the same price keeps priority; a new price or more qty loses it."""

    def test_reduce_keeps_priority(self, ex):
        """The older bid reduced from 5 to 2 still fills first."""
        older = ex.accepted_id(ex.place(BUY, 1000, 5, account=1))
        ex.place(BUY, 1000, 5, account=2)
        events = ex.replace(older, qty=2)
        assert [e.kept_priority for e in of(OrderReplaced, events)] == [True]
        fills = of(Trade, ex.place(SELL, 1000, 1, account=3))
        assert fills[0].maker_order_id == older

    def test_increase_loses_priority(self, ex):
        """The older bid raised from 5 to 6 now fills after the newer one."""
        older = ex.accepted_id(ex.place(BUY, 1000, 5, account=1))
        newer = ex.accepted_id(ex.place(BUY, 1000, 5, account=2))
        ex.replace(older, qty=6)
        assert of(Trade, ex.place(SELL, 1000, 1, account=3))[0].maker_order_id == newer

    def test_new_price_that_crosses_trades(self, ex):
        """A bid moved up to the ask trades as a taker."""
        ex.load("""
            bid  price  ask
                  1002    4
        """)
        bid = ex.accepted_id(ex.place(BUY, 1000, 3))
        events = ex.replace(bid, price=1002)
        assert trades(events) == [(1002, 3)]
        assert ex.ex.order(bid).status is OrderStatus.FILLED

    def test_qty_not_above_filled_is_rejected(self, ex):
        """A partially filled order of 5 (3 filled) cannot be replaced down to 3."""
        ex.place(SELL, 1000, 3, account=2)
        bid = ex.accepted_id(ex.place(BUY, 1000, 5))
        assert rejected(ex.replace(bid, qty=3)) == ["INVALID_QUANTITY"]
        events = ex.replace(bid, qty=4)
        assert [(e.qty, e.leaves) for e in of(OrderReplaced, events)] == [(4, 1)]

    def test_another_accounts_order_is_unknown(self, ex):
        """Replacing or cancelling another account's order reads as an unknown order."""
        bid = ex.accepted_id(ex.place(BUY, 1000, 5, account=1))
        assert rejected(ex.replace(bid, account=2, price=999)) == ["UNKNOWN_ORDER"]
        assert rejected(ex.cancel(bid, account=2)) == ["UNKNOWN_ORDER"]
        assert rejected(ex.cancel(10**9)) == ["UNKNOWN_ORDER"]

    def test_closed_order_cannot_be_replaced_or_cancelled(self, ex):
        """A filled order is closed: order_closed, not unknown."""
        ex.place(SELL, 1000, 1, account=2)
        bid = ex.accepted_id(ex.place(BUY, 1000, 1))
        assert rejected(ex.replace(bid, price=999)) == ["ORDER_CLOSED"]
        assert rejected(ex.cancel(bid)) == ["ORDER_CLOSED"]

    def test_rejected_replace_by_client_order_id_names_the_order(self, ex):
        """A replace named by client_order_id that fails still reports the order id."""
        bid = ex.accepted_id(ex.place(BUY, 1000, 5, client_order_id="mm-1"))
        events = ex.send(ReplaceOrder(ts_ns=ex.tick(), account_id=1, client_order_id="mm-1",
                                      price=1500))
        assert rejected(events) == ["PRICE_OUT_OF_BAND"] and events[0].order_id == bid

    def test_replace_out_of_band_changes_nothing(self, ex):
        """A replace to a price outside the band is rejected and the order is unchanged."""
        bid = ex.accepted_id(ex.place(BUY, 1000, 5))
        assert rejected(ex.replace(bid, price=1200)) == ["PRICE_OUT_OF_BAND"]
        assert (ex.ex.order(bid).price, ex.ex.order(bid).qty) == (1000, 5)


class TestCancelAll:
    """cancel_all cancels the account's live orders, of one symbol or all."""

    def test_cancel_all_by_symbol_leaves_other_symbols(self, book_factory):
        """Only the named symbol's orders go; other accounts are untouched."""
        other = "H100-2027-04"
        h = Harness(book_factory, [instrument(), instrument(symbol=other)])
        a = h.accepted_id(h.place(BUY, 1000, 1))
        b = h.accepted_id(h.place(BUY, 1000, 1, symbol=other))
        h.place(BUY, 1000, 1, account=2)
        events = h.send(CancelAll(ts_ns=h.tick(), account_id=1, symbol=SYMBOL))
        assert cancelled(events) == [(a, "USER", 1)]
        events = h.send(CancelAll(ts_ns=h.tick(), account_id=1))
        assert cancelled(events) == [(b, "USER", 1)]
        assert len(h.ex.open_orders(2)) == 1


class TestValidation:
    """A bad command is rejected with a reason and a field, and changes nothing."""

    @pytest.mark.parametrize("kw, reason, field", [
        (dict(symbol="H100-2099-01"), "UNKNOWN_INSTRUMENT", "symbol"),
        (dict(qty=10_001), "INVALID_QUANTITY", "qty"),
        (dict(order_type=OrderType.LIMIT, price=None), "INVALID_PARAMS", "price"),
        (dict(stop_price=990), "INVALID_PARAMS", "stop_price"),
        (dict(display_qty=1, tif=IOC), "INVALID_PARAMS", "display_qty"),
    ])
    def test_bad_place_is_rejected_with_field(self, ex, kw, reason, field):
        """Each malformed order names what is wrong."""
        args = dict(side=BUY, price=1000, qty=2)
        args.update(kw)
        events = ex.place(**args)
        assert rejected(events) == [reason]
        assert events[0].field == field
        assert len(events) == 1 and ex.ex.orders == {}

    def test_schema_refuses_zero_qty_and_unknown_fields(self):
        """msgspec validation catches what the types can say: qty >= 1, no stray fields."""
        decode = msgspec.json.Decoder(PlaceOrder).decode
        with pytest.raises(msgspec.ValidationError, match="qty"):
            decode(b'{"type":"place_order","ts_ns":1,"account_id":1,"symbol":"X",'
                   b'"side":1,"qty":0}')
        with pytest.raises(msgspec.ValidationError, match="post_onyl"):
            decode(b'{"type":"place_order","ts_ns":1,"account_id":1,"symbol":"X",'
                   b'"side":1,"qty":1,"post_onyl":true}')


class TestBookEvents:
    """Every level change is published once per command with a gap-free book_seq."""

    def test_book_seq_has_no_gaps_and_levels_are_final(self, ex):
        """A sweep reports each touched level once with its final state."""
        ex.load("""
            bid  price  ask
                  1003    5
                  1002    4
              7   1000
        """)
        events = ex.place(BUY, 1003, 6)
        changes = of(BookLevelChanged, events)
        assert [(c.side, c.price, c.qty, c.orders) for c in changes] == \
            [(-1, 1002, 0, 0), (-1, 1003, 3, 1)]
        assert [c.book_seq for c in changes] == [4, 5]

    def test_accepted_event_precedes_trades(self, ex):
        """The taker's acceptance comes before its trades."""
        ex.place(SELL, 1000, 1, account=2)
        events = ex.place(BUY, 1000, 1)
        assert [type(e) for e in events][:2] == [OrderAccepted, Trade]


def test_same_commands_give_byte_identical_events(book_factory):
    """Two fresh exchanges fed one command list encode equal events and equal state."""
    def run():
        h = Harness(book_factory)
        out = []
        for i in range(200):
            side = BUY if i % 3 else SELL
            out += h.place(side, 995 + (i * 7) % 11, 1 + i % 4, account=i % 5,
                           tif=IOC if i % 10 == 0 else 0)
        return msgspec.msgpack.encode(out), h.ex.state_hash()
    assert run() == run()


class TestRiskGate:
    """The risk side is asked before the book and told every command's events after."""

    class Gate:
        def __init__(self):
            self.asked = []
            self.applied = []

        def check(self, account_id, symbol, side, price, qty, liquidation, replaces):
            self.asked.append((account_id, side, price, qty, liquidation, replaces))
            if qty > 5:
                return (RejectReason.INSUFFICIENT_MARGIN, "initial margin above equity")
            return None

        def apply(self, events):
            self.applied.append(list(events))

        def position(self, account_id, symbol):
            return 0

    def test_refused_order_never_reaches_the_book(self):
        """An order the gate refuses is rejected with the gate's reason and rests nowhere."""
        gate = self.Gate()
        ex = Exchange([instrument()], risk=gate, check_invariants=True)
        events = ex.process(PlaceOrder(ts_ns=T0, account_id=1, symbol=SYMBOL, side=BUY,
                                       qty=6, price=1000, liquidation=True))
        assert rejected(events) == ["INSUFFICIENT_MARGIN"]
        assert gate.asked == [(1, BUY, 1000, 6, True, None)]
        assert len(ex.markets[SYMBOL].book) == 0
        assert gate.applied == [events]

    def test_market_order_is_checked_at_its_band_limit_and_replace_names_the_order(self):
        """A market buy is checked at the band's top; a replace passes the order it changes."""
        gate = self.Gate()
        ex = Exchange([instrument()], risk=gate)
        ex.process(PlaceOrder(ts_ns=T0, account_id=2, symbol=SYMBOL, side=SELL, qty=1, price=1000))
        ex.process(PlaceOrder(ts_ns=T0 + 1, account_id=1, symbol=SYMBOL, side=BUY, qty=1,
                              order_type=OrderType.MARKET))
        assert gate.asked[-1] == (1, BUY, 1100, 1, False, None)
        events = ex.process(PlaceOrder(ts_ns=T0 + 2, account_id=1, symbol=SYMBOL, side=BUY,
                                       qty=2, price=990))
        order_id = events[0].order_id
        events = ex.process(ReplaceOrder(ts_ns=T0 + 3, account_id=1, order_id=order_id, qty=9))
        assert rejected(events) == ["INSUFFICIENT_MARGIN"]
        assert gate.asked[-1] == (1, BUY, 990, 9, False, order_id)
        assert ex.order(order_id).qty == 2


def hold(h, lots, account=1, price=1000):
    """Give ``account`` a position of ``lots`` (signed) against account 2."""
    side = BUY if lots > 0 else SELL
    h.place(-side, price, abs(lots), account=2)
    assert trades(h.place(side, price, abs(lots), account=account, tif=IOC)) == \
        [(price, abs(lots))]


def accepted(events):
    (ev,) = of(OrderAccepted, events)
    return ev


def reduced(events):
    return [(e.order_id, e.qty, e.leaves) for e in of(OrderReduced, events)]


class TestReduceOnly:
    """DESIGN.md §4, PROTOCOL.md order.place: a reduce-only order may only ever shrink
    |position|. With a risk gate that knows positions: cut to fit on arrival, stopped
    before it fills as a maker and fitted to the position as it is then, fitted again
    after every command that moves its account's position."""

    def test_order_larger_than_the_position_is_cut_to_it(self, gated):
        """Long 5: a reduce-only sell of 8 is accepted for 5, and that is its quantity."""
        hold(gated, 5)
        ev = accepted(gated.place(SELL, 1010, 8, reduce_only=True))
        assert ev.qty == 5 and gated.ex.order(ev.order_id).leaves_qty == 5

    def test_other_reduce_only_orders_on_the_side_take_their_share(self, gated):
        """Long 5: a reduce-only sell of 3 rests, one of 4 gets the 2 left (a stop counts
        too), and a third is refused: nothing is left."""
        hold(gated, 5)
        gated.place(SELL, 1010, 3, reduce_only=True)
        stop = accepted(gated.place(SELL, None, 4, order_type=OrderType.STOP_MARKET,
                                    stop_price=990, reduce_only=True))
        assert stop.qty == 2
        events = gated.place(SELL, 1020, 1, reduce_only=True)
        assert rejected(events) == ["REDUCE_ONLY_WOULD_INCREASE"]
        assert events[0].field == "reduce_only" and "hold 5" in events[0].detail

    def test_flat_or_adding_is_refused(self, gated):
        """Flat, or a buy while long: nothing to reduce."""
        assert rejected(gated.place(SELL, 1010, 1, reduce_only=True)) == \
            ["REDUCE_ONLY_WOULD_INCREASE"]
        hold(gated, 3)
        assert rejected(gated.place(BUY, 990, 1, reduce_only=True)) == \
            ["REDUCE_ONLY_WOULD_INCREASE"]
        assert rejected(gated.place(BUY, None, 1, tif=IOC, reduce_only=True)) == \
            ["REDUCE_ONLY_WOULD_INCREASE"]

    def test_without_a_risk_gate_reduce_only_is_not_enforced(self, ex):
        """The engine alone knows no positions: a reduce-only order is an ordinary one."""
        ex.place(BUY, 1000, 2, account=2)
        events = ex.place(SELL, 1000, 2, reduce_only=True)
        assert trades(events) == [(1000, 2)]

    def test_maker_behind_the_accounts_own_fills_is_cut_to_what_is_left(self, gated):
        """Long 10 with a sell of 6 at 1000 and a reduce-only sell of 10 at 1001: a buy of
        20 takes the 6, the walk stops at the reduce-only sell, which is cut to the 4 left
        (keeping its place ahead of a later ask), and takes those 4."""
        hold(gated, 10)
        gated.place(SELL, 1000, 6)
        reducing = accepted(gated.place(SELL, 1001, 10, reduce_only=True)).order_id
        later = accepted(gated.place(SELL, 1001, 5, account=3)).order_id
        events = gated.place(BUY, 1001, 12, account=4)
        assert trades(events) == [(1000, 6), (1001, 4), (1001, 2)]
        assert reduced(events) == [(reducing, 6, 4)]
        assert [type(e).__name__ for e in events[:4]] == \
            ["OrderAccepted", "Trade", "OrderReduced", "Trade"]
        assert gated.ex.order(reducing).status is OrderStatus.FILLED
        assert gated.ex.risk.position(1, SYMBOL) == 0
        assert [o[0] for o in gated.ex.markets[SYMBOL].book.orders(-1)] == [later]

    def test_cut_maker_keeps_its_priority(self, gated):
        """The walk stops at a reduce-only ask, cuts it from 10 to 4, and fills 2 of it; the
        2 left still rest ahead of the ask that came after it."""
        hold(gated, 10)
        gated.place(SELL, 1000, 6)
        reducing = accepted(gated.place(SELL, 1001, 10, reduce_only=True)).order_id
        later = accepted(gated.place(SELL, 1001, 5, account=3)).order_id
        events = gated.place(BUY, 1001, 8, account=4)
        assert trades(events) == [(1000, 6), (1001, 2)]
        assert reduced(events) == [(reducing, 6, 4)]
        assert [o[0] for o in gated.ex.markets[SYMBOL].book.orders(-1)] == [reducing, later]
        assert gated.ex.order(reducing).qty == 4 and gated.ex.order(reducing).leaves_qty == 2
        assert gated.ex.risk.position(1, SYMBOL) == 2

    def test_maker_with_nothing_left_is_cancelled_not_filled(self, gated):
        """Long 4 with a sell of 4 at 1000 and a reduce-only sell of 4 at 1001: a buy of 8
        closes the position on the first and finds the second cancelled (reason reduce_only)."""
        hold(gated, 4)
        gated.place(SELL, 1000, 4)
        reducing = accepted(gated.place(SELL, 1001, 4, reduce_only=True)).order_id
        events = gated.place(BUY, 1001, 8, account=4, tif=IOC)
        assert trades(events) == [(1000, 4)]
        assert cancelled(events)[0] == (reducing, "REDUCE_ONLY", 4)
        assert gated.ex.risk.position(1, SYMBOL) == 0

    def test_iceberg_maker_is_fitted_again_at_each_tranche(self, gated):
        """Long 6: a reduce-only iceberg of 6 showing 2 and then a plain sell of 4 at 1001.
        A buy of 10 fills the iceberg's tranche, the plain sell closes the position, and the
        iceberg's next tranche is cancelled, not filled."""
        hold(gated, 6)
        iceberg = accepted(gated.place(SELL, 1001, 6, display_qty=2, reduce_only=True)).order_id
        gated.place(SELL, 1001, 4)
        events = gated.place(BUY, 1001, 10, account=4, tif=IOC)
        assert [(t.maker_order_id, t.qty) for t in of(Trade, events)][:1] == [(iceberg, 2)]
        assert trades(events) == [(1001, 2), (1001, 4)]
        assert cancelled(events)[0] == (iceberg, "REDUCE_ONLY", 4)
        assert gated.ex.risk.position(1, SYMBOL) == 0

    def test_resting_order_goes_when_its_position_closes(self, gated):
        """Long 5 with a reduce-only sell of 5 resting at 1010: selling the 5 elsewhere
        cancels it in the same command, so it cannot open a short later."""
        hold(gated, 5)
        reducing = accepted(gated.place(SELL, 1010, 5, reduce_only=True)).order_id
        gated.place(BUY, 1000, 5, account=3)
        events = gated.place(SELL, 1000, 5, tif=IOC)
        assert cancelled(events) == [(reducing, "REDUCE_ONLY", 5)]
        assert levels(events)[-1] == (-1, 1010, 0, 0)
        assert trades(gated.place(BUY, 1010, 5, account=3)) == []

    def test_flipped_position_cancels_the_orders_that_would_now_add(self, gated):
        """Long 5 with a reduce-only sell resting: selling 8 leaves the account short 3, and
        the reduce-only sell, which would now add to the short, is cancelled."""
        hold(gated, 5)
        reducing = accepted(gated.place(SELL, 1010, 5, reduce_only=True)).order_id
        gated.place(BUY, 1000, 8, account=3)
        events = gated.place(SELL, 1000, 8, tif=IOC)
        assert cancelled(events) == [(reducing, "REDUCE_ONLY", 5)]
        assert gated.ex.risk.position(1, SYMBOL) == -3

    def test_a_shrinking_position_trims_the_newest_first(self, gated):
        """Long 10 with reduce-only sells of 4 (older) and 6 (newer): down to 7, the newer
        loses 3 and keeps its place; down to 2, the newer goes and the older keeps 2."""
        hold(gated, 10)
        older = accepted(gated.place(SELL, 1010, 4, reduce_only=True)).order_id
        newer = accepted(gated.place(SELL, 1010, 6, reduce_only=True)).order_id
        gated.place(BUY, 1000, 8, account=3)
        events = gated.place(SELL, 1000, 3, tif=IOC)
        assert reduced(events) == [(newer, 3, 3)] and cancelled(events) == []
        assert [o[0] for o in gated.ex.markets[SYMBOL].book.orders(-1)] == [older, newer]
        events = gated.place(SELL, 1000, 5, tif=IOC)
        assert cancelled(events) == [(newer, "REDUCE_ONLY", 3)]
        assert reduced(events) == [(older, 2, 2)]
        assert [(o.order_id, o.qty, o.leaves_qty) for o in gated.ex.open_orders(1)] == \
            [(older, 2, 2)]

    def test_stop_is_cut_when_it_triggers(self, gated):
        """Long 5 with a reduce-only sell stop of 5 at 999: the account's own sell of 3 at
        999 triggers it in the same command, and it sells only the 2 left."""
        hold(gated, 5)
        stop = accepted(gated.place(SELL, None, 5, order_type=OrderType.STOP_MARKET,
                                    stop_price=999, reduce_only=True)).order_id
        gated.place(BUY, 999, 3, account=3)
        gated.place(BUY, 998, 10, account=3)
        events = gated.place(SELL, 999, 3, tif=IOC)
        assert [e.order_id for e in of(OrderTriggered, events)] == [stop]
        assert reduced(events) == [(stop, 3, 2)]
        assert trades(events) == [(999, 3), (998, 2)]
        assert gated.ex.risk.position(1, SYMBOL) == 0

    def test_replace_to_a_larger_qty_is_cut_to_fit(self, gated):
        """Long 5: a reduce-only sell of 2 replaced to 9 becomes 5 (OrderReplaced says so);
        with another of 3 resting beside it, a replace to 4 leaves it at 2, in its place."""
        hold(gated, 5)
        first = accepted(gated.place(SELL, 1010, 2, reduce_only=True)).order_id
        (replaced,) = of(OrderReplaced, gated.replace(first, qty=9))
        assert (replaced.qty, replaced.leaves) == (5, 5)
        gated.replace(first, qty=2)
        gated.place(SELL, 1010, 3, reduce_only=True)
        (replaced,) = of(OrderReplaced, gated.replace(first, qty=4))
        assert (replaced.qty, replaced.leaves, replaced.kept_priority) == (2, 2, True)
        assert gated.ex.markets[SYMBOL].book.orders(-1)[0][0] == first

    def test_fill_or_kill_counts_reduce_only_asks_only_as_far_as_they_fit(self, gated):
        """Long 10 with a sell of 6 at 1000 and a reduce-only sell of 10 at 1001: 16 lots
        show, but only 10 can fill, so a FOK buy of 11 is refused and one of 10 fills."""
        hold(gated, 10)
        gated.place(SELL, 1000, 6)
        gated.place(SELL, 1001, 10, reduce_only=True)
        assert rejected(gated.place(BUY, 1001, 11, account=4, tif=FOK)) == ["FOK_NOT_FILLABLE"]
        events = gated.place(BUY, 1001, 10, account=4, tif=FOK)
        assert trades(events) == [(1000, 6), (1001, 4)]
        assert gated.ex.order(accepted(events).order_id).status is OrderStatus.FILLED

    def test_gate_gets_each_event_once_and_positions_as_of_the_stop(self, gated):
        """A command that stops at a reduce-only maker hands the gate its events in parts,
        each once, in order; what the command returns is exactly what the gate got."""
        hold(gated, 10)
        gated.place(SELL, 1000, 6)
        gated.place(SELL, 1001, 10, reduce_only=True)
        before = len(gated.ex.risk.log)
        events = gated.place(BUY, 1001, 12, account=4)
        assert gated.ex.risk.log[before:] == events

    def test_replace_is_refused_when_the_position_left_nothing(self, gated):
        """Should a position move outside the engine's commands (clearing), a reduce-only
        order with no room left cannot be raised: reduce_only_would_increase."""
        hold(gated, 5)
        order = accepted(gated.place(SELL, 1010, 2, reduce_only=True)).order_id
        gated.ex.risk.positions[(1, SYMBOL)] = 0
        assert rejected(gated.replace(order, qty=3)) == ["REDUCE_ONLY_WOULD_INCREASE"]
        assert gated.ex.order(order).qty == 2
        gated.ex.risk.positions[(1, SYMBOL)] = 5

    def test_pickled_exchange_keeps_its_reduce_only_orders(self, gated):
        """An exchange pickled (as snapshots do) hashes the same, and its book still stops
        at the reduce-only maker and fits it as the original does."""
        import pickle
        hold(gated, 10)
        gated.place(SELL, 1000, 6)
        reducing = accepted(gated.place(SELL, 1001, 10, reduce_only=True)).order_id
        copy = pickle.loads(pickle.dumps(gated.ex))
        assert copy.state_hash() == gated.ex.state_hash()
        ts = gated.tick()
        cmd = PlaceOrder(ts_ns=ts, account_id=4, symbol=SYMBOL, side=BUY, qty=12, price=1001)
        assert copy.process(cmd) == gated.ex.process(cmd)
        assert copy.order(reducing).qty == 4 and copy.state_hash() == gated.ex.state_hash()


class TestRetention:
    """Closed orders stay retrievable for seven days, then are forgotten."""

    def test_closed_order_kept_seven_days_then_forgotten(self, ex):
        """A cancelled order is found after 6 days; after 7 its client_order_id is free again."""
        order_id = ex.accepted_id(ex.place(BUY, 1000, 1, client_order_id="keep"))
        ex.cancel(order_id)
        closed_at = ex.ts
        ex.timer(closed_at + 6 * DAY)
        assert ex.ex.order_by_client_id(1, "keep").order_id == order_id
        ex.timer(closed_at + 7 * DAY)
        assert ex.ex.order(order_id) is None
        assert ex.ex.order_by_client_id(1, "keep") is None
        assert rejected(ex.place(BUY, 1000, 1, client_order_id="keep")) == []

    def test_live_order_is_never_forgotten(self, ex):
        """A resting GTC order outlives the retention window."""
        order_id = ex.accepted_id(ex.place(BUY, 1000, 1))
        ex.timer(ex.ts + 30 * DAY)
        assert ex.ex.order(order_id).status is OrderStatus.OPEN


class TestLastPriceAndStops:
    """The last price is the last trade's; every print of a command can trigger stops."""

    def test_self_trade_after_a_fill_does_not_set_the_last_price(self, ex):
        """A buy fills at 1001, then meets its own ask at 1005: the last price stays 1001."""
        ex.place(SELL, 1001, 1, account=2)
        ex.place(SELL, 1005, 1, account=1)
        stop = ex.accepted_id(ex.place(BUY, None, 1, order_type=OrderType.STOP_MARKET,
                                       stop_price=1003, account=3))
        events = ex.place(BUY, 1005, 2, account=1)
        assert trades(events) == [(1001, 1)]
        market = ex.ex.markets[SYMBOL]
        assert (market.last_price, market.band_low, market.band_high) == (1001, 901, 1101)
        assert ex.ex.order(stop).status is OrderStatus.UNTRIGGERED

    def test_sweep_through_a_stop_price_triggers_the_opposite_stop(self, ex):
        """A buy sweeping 1001 then 1003 reaches a sell stop at 1002 on its first print."""
        ex.place(SELL, 1005, 1, account=7)
        ex.place(BUY, 1005, 1, account=8)                 # last 1005
        stop = ex.accepted_id(ex.place(SELL, None, 1, order_type=OrderType.STOP_MARKET,
                                       stop_price=1002, account=3))
        ex.load("""
            bid  price  ask
                  1003    1
                  1001    1
              4    990
        """)
        events = ex.place(BUY, 1003, 2, account=1, tif=IOC)
        triggered = of(OrderTriggered, events)
        assert [(e.order_id, e.trade_price) for e in triggered] == [(stop, 1001)]
        assert trades(events) == [(1001, 1), (1003, 1), (990, 1)]

    def test_reference_price_after_a_trade_recentres_the_band(self, ex):
        """A settlement price after trading moves the band until the next trade."""
        ex.place(SELL, 1000, 1, account=2)
        ex.place(BUY, 1000, 1)
        ex.send(SetReferencePrice(ts_ns=ex.tick(), symbol=SYMBOL, price=1050))
        market = ex.ex.markets[SYMBOL]
        assert (market.band_low, market.band_high, market.last_price) == (945, 1155, 1000)
        assert rejected(ex.place(SELL, 1150, 1, account=2)) == []

    def test_gtd_stop_expires_untriggered(self, ex):
        """A GTD stop that never triggers expires and leaves the stop list."""
        ex.place(SELL, 1000, 1, account=7)
        ex.place(BUY, 1000, 1, account=8)
        expire = ex.ts + 10 * SEC
        stop = ex.accepted_id(ex.place(BUY, 1010, 1, order_type=OrderType.STOP_LIMIT,
                                       stop_price=1005, tif=GTD, expire_at_ns=expire))
        events = ex.timer(expire)
        assert [e.order_id for e in of(OrderExpired, events)] == [stop]
        assert len(ex.ex.markets[SYMBOL].buy_stops) == 0

    def test_cancel_all_takes_untriggered_stops_too(self, ex):
        """cancel_all cancels resting and untriggered orders alike."""
        ex.place(SELL, 1000, 1, account=7)
        ex.place(BUY, 1000, 1, account=8)
        resting = ex.accepted_id(ex.place(BUY, 990, 1))
        stop = ex.accepted_id(ex.place(SELL, None, 1, order_type=OrderType.STOP_MARKET,
                                       stop_price=995))
        events = ex.send(CancelAll(ts_ns=ex.tick(), account_id=1))
        assert sorted(cancelled(events)) == [(resting, "USER", 1), (stop, "USER", 1)]
        assert len(ex.ex.markets[SYMBOL].sell_stops) == 0

    def test_replace_of_stop_market_keeps_price_none(self, ex):
        """Replacing a stop-market's qty reports no price, as it has none."""
        ex.place(SELL, 1000, 1, account=7)
        ex.place(BUY, 1000, 1, account=8)
        stop = ex.accepted_id(ex.place(BUY, None, 1, order_type=OrderType.STOP_MARKET,
                                       stop_price=1010))
        (replaced,) = of(OrderReplaced, ex.replace(stop, qty=3))
        assert (replaced.price, replaced.qty) == (None, 3)
        assert rejected(ex.replace(stop, price=1000)) == ["INVALID_PARAMS"]


class TestTimeAndRange:
    """Time only moves forward; a price the book cannot hold is refused before anything changes."""

    def test_command_stamped_before_the_previous_one_is_rejected(self, ex):
        """A command with an earlier ts_ns than the last is refused and changes nothing."""
        ex.place(BUY, 1000, 1)
        events = ex.send(PlaceOrder(ts_ns=ex.ts - 1, account_id=1, symbol=SYMBOL, side=BUY,
                                    qty=1, price=1000))
        assert rejected(events) == ["INVALID_PARAMS"] and events[0].field == "ts_ns"
        assert len(ex.ex.markets[SYMBOL].book) == 1

    def test_price_far_from_resting_orders_is_refused_whole(self):
        """After the band walked far from an old bid, a resting order out there is refused."""
        ex = Harness(OrderBook)
        ex.place(BUY, 900, 1, account=9)               # stays behind
        while True:                                     # two accounts walk the price up
            price = ex.ex.markets[SYMBOL].band_high
            orders_before = len(ex.ex.orders)
            events = ex.place(SELL, price, 1, account=2)
            if rejected(events):
                break
            assert trades(ex.place(BUY, price, 1, account=3)) == [(price, 1)]
        assert price - 900 >= 1 << 20                   # the widest range one book holds
        assert rejected(events) == ["PRICE_OUT_OF_RANGE"] and "too far" in events[0].detail
        assert len(events) == 1 and len(ex.ex.orders) == orders_before
        assert ex.ex.markets[SYMBOL].book.orders(1) == [(1, 9, 900, 1, 0)]
        ex.ex.markets[SYMBOL].book.check_invariants()


    def test_the_only_resting_order_may_move_anywhere_in_the_band(self):
        """After a far settlement price, the book's one order can be replaced out there."""
        ex = Harness(OrderBook)
        bid = ex.accepted_id(ex.place(BUY, 1000, 1))
        ex.send(SetReferencePrice(ts_ns=ex.tick(), symbol=SYMBOL, price=2_000_000))
        events = ex.replace(bid, price=1_950_000)
        assert rejected(events) == [] and ex.ex.markets[SYMBOL].book.best_bid() == 1_950_000
        assert levels(events) == [(1, 1000, 0, 0), (1, 1_950_000, 1, 1)]


class TestDecrementAgainstIceberg:
    """Decrement takes the iceberg's reserve first, keeping its place."""

    def test_decrement_reduces_iceberg_reserve(self, ex):
        """Own buy 4 against own iceberg 10 (showing 3): the iceberg keeps 6, still showing 3."""
        own = ex.accepted_id(ex.place(SELL, 1002, 10, display_qty=3))
        events = ex.place(BUY, 1002, 4, stp=SelfTradePrevention.DECREMENT)
        assert [(e.order_id, e.qty, e.leaves) for e in of(OrderReduced, events)] == [(own, 4, 6)]
        assert ex.ex.markets[SYMBOL].book.order(own)[2:] == (3, 3)
        assert levels(events) == []
