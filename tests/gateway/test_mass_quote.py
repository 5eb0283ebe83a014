"""order.mass_quote and order.cancel_quotes: a market maker's quote slots set in one request."""
from __future__ import annotations

import asyncio
import json

import pytest

from gateway.storage import journal as journal_module
from gateway.storage.journal import segments
from engine.prices import format_price
from inproc import InProcess
from live import SYMBOL, Ws, run

OTHER = "H100-2027-04"


def slot(price: str, qty: int, side: str = "buy", level: int = 0, symbol: str = SYMBOL):
    return {"symbol": symbol, "side": side, "level": level, "price": price, "qty": qty}


LADDER = [slot("2.000", 5), slot("1.990", 10, level=1),
          slot("2.200", 5, "sell"), slot("2.210", 10, "sell", 1)]


@pytest.fixture
def venue(tmp_path):
    return InProcess(tmp_path / "data")


def quotes(venue, session, slots, **kw) -> list[dict]:
    return venue.result(session, "order.mass_quote", quotes=slots, **kw)["quotes"]


def book(venue, symbol=SYMBOL):
    venue.seal()
    snap = venue.feed.symbols[symbol].book.snapshot()
    return snap["bids"], snap["asks"]


def test_a_ladder_is_placed_in_one_request_and_one_journal_batch(venue):
    maker = venue.session("maker-1")
    venue.seal()
    first = venue.journal.next_seq
    results = quotes(venue, maker, LADDER)
    assert [(r["symbol"], r["side"], r["level"], r["error"]) for r in results] == \
        [(SYMBOL, "buy", 0, None), (SYMBOL, "buy", 1, None), (SYMBOL, "sell", 0, None),
         (SYMBOL, "sell", 1, None)]
    assert [(r["order"]["price"], r["order"]["qty"], r["order"]["status"], r["order"]["post_only"])
            for r in results] == [("2.000", 5, "open", True), ("1.990", 10, "open", True),
                                  ("2.200", 5, "open", True), ("2.210", 10, "open", True)]
    assert all(r["order"]["client_order_id"].startswith("q:") for r in results)
    assert book(venue) == ([["2.000", 5, 1], ["1.990", 10, 1]],
                           [["2.200", 5, 1], ["2.210", 10, 1]])
    # The four places are one batch of the journal: one write, one sync.
    assert batches(venue)[-1] == (first, 4)


def batches(venue) -> list[tuple[int, int]]:
    """(first seq, records) of each batch in the journal."""
    return [(seq, count) for _, path in segments(venue.journal.directory)
            for _, seq, count in journal_module.batches(path)]


def test_a_requote_replaces_in_place_keeps_priority_when_only_qty_falls_and_skips_the_same(
        venue):
    maker, other = venue.session("maker-1"), venue.session("maker-2")
    placed = {r["level"]: r["order"]["order_id"]
              for r in quotes(venue, maker, LADDER) if r["side"] == "buy"}
    venue.result(other, "order.place", symbol=SYMBOL, side="buy", qty=3, price="2.000")
    venue.seal()
    before = venue.journal.next_seq
    same = quotes(venue, maker, LADDER)
    assert venue.journal.next_seq == before                   # nothing to do: no command
    assert [r["order"]["order_id"] for r in same if r["side"] == "buy"] == [placed[0], placed[1]]
    moved = quotes(venue, maker, [slot("2.000", 2), slot("1.995", 10, level=1)])
    assert [r["order"]["order_id"] for r in moved] == [placed[0], placed[1]]
    assert venue.journal.next_seq == before + 2
    # Only the quantity fell at 2.000: the quote is still ahead of maker-2's order.
    taker = venue.session("trader-1")
    venue.result(taker, "order.place", symbol=SYMBOL, side="sell", qty=2, price="2.000",
                 tif="ioc")
    order = venue.result(maker, "order.get", order_id=placed[0])
    assert (order["status"], order["filled_qty"]) == ("filled", 2)
    assert book(venue)[0] == [["2.000", 3, 1], ["1.995", 10, 1]]


def test_a_partly_filled_quote_is_topped_up_in_place_and_qty_zero_removes(venue):
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    first = quotes(venue, maker, [slot("2.000", 5)])[0]["order"]
    venue.result(taker, "order.place", symbol=SYMBOL, side="sell", qty=2, price="2.000",
                 tif="ioc")
    [again] = quotes(venue, maker, [slot("2.000", 5)])        # shows 5 again: 2 filled + 5
    assert again["error"] is None and again["order"]["order_id"] == first["order_id"]
    assert (again["order"]["qty"], again["order"]["filled_qty"],
            again["order"]["remaining_qty"]) == (7, 2, 5)
    [moved] = quotes(venue, maker, [slot("1.990", 4)])
    assert (moved["order"]["order_id"], moved["order"]["remaining_qty"]) == \
        (first["order_id"], 4)
    [gone] = quotes(venue, maker, [slot("2.000", 0)])
    assert (gone["order"]["status"], gone["error"]) == ("cancelled", None)
    [empty] = quotes(venue, maker, [slot("2.000", 0)])
    assert (empty["order"], empty["error"]) == (None, None)
    assert book(venue)[0] == []


def test_a_quote_asked_for_another_post_only_is_renewed(venue):
    """A replace keeps an order's own post_only, so a slot asked for another is given a
    new order; one that would then take is refused first, and the slot keeps its order."""
    maker, seller = venue.session("maker-1"), venue.session("trader-1")
    [first] = quotes(venue, maker, [slot("2.000", 5)], post_only=False)
    [renewed] = quotes(venue, maker, [slot("2.010", 5)])             # post_only: true
    assert renewed["order"]["order_id"] != first["order"]["order_id"]
    assert renewed["order"]["post_only"] is True
    venue.result(seller, "order.place", symbol=SYMBOL, side="sell", qty=5, price="2.050")
    [crossing] = quotes(venue, maker, [slot("2.050", 5)], post_only=False)   # would take...
    assert crossing["error"] is None and crossing["order"]["status"] == "filled"  # ...and may
    [again] = quotes(venue, maker, [slot("2.000", 5)], post_only=False)
    venue.result(seller, "order.place", symbol=SYMBOL, side="sell", qty=5, price="2.060")
    [refused] = quotes(venue, maker, [slot("2.060", 5)])             # post-only: would take
    assert refused["error"]["data"]["reason"] == "post_only_would_take"
    assert refused["order"]["order_id"] == again["order"]["order_id"]    # kept as it was


def test_one_slots_refusal_leaves_it_as_it_was_and_the_others_go_on(venue):
    maker = venue.session("maker-1")
    quotes(venue, maker, LADDER)
    results = quotes(venue, maker, [
        slot("2.001", 5),                              # fine
        slot("2.2005", 5, "sell"),                     # off tick
        slot("2.250", 5, "sell", 1),                   # fine
        slot("2.200", 5, level=1),                     # would take the 2.200 offer
        slot("9.000", 5, symbol=OTHER),                # out of band
        slot("2.000", -1, level=2),                    # negative
        slot("2.000", 5, symbol="H100-2031-01")])      # not listed
    assert [r["error"] and r["error"]["data"]["reason"] for r in results] == [
        None, "price_off_tick", None, "post_only_would_take", "price_out_of_band",
        "invalid_quantity", "unknown_instrument"]
    assert [r["order"] and r["order"]["price"] for r in results] == [
        "2.001", "2.200", "2.250", "1.990", None, None, None]      # refused: as they were
    assert results[1]["error"]["data"]["field"] == "price"
    assert book(venue) == ([["2.001", 5, 1], ["1.990", 10, 1]],
                           [["2.200", 5, 1], ["2.250", 5, 1]])


@pytest.mark.parametrize("params, field", [
    ({"quotes": []}, "quotes"),
    ({"quotes": [slot("2.000", 1)] * 2}, "quotes"),
    ({"quotes": [slot("2.000", 1, level=10)]}, "quotes"),
    ({"quotes": [{**slot("2.000", 1), "tif": "ioc"}]}, "quotes"),
    ({"quotes": [slot("2.000", 1)] * 101}, "quotes"),
    ({"quotes": [slot("2.000", 1)], "post_only": "yes"}, "post_only"),
])
def test_a_malformed_mass_quote_is_refused_whole_and_changes_nothing(venue, params, field):
    maker = venue.session("maker-1")
    before = venue.digest()
    reply, handled = venue.send(maker, json.dumps({"jsonrpc": "2.0", "id": 7, "params": params,
                                                   "method": "order.mass_quote"}))
    assert reply["error"]["data"]["reason"] == "invalid_params", reply
    assert reply["error"]["data"]["field"] == field
    assert handled.commands == [] and venue.digest() == before


def test_only_market_makers_quote(venue):
    trader = venue.session("trader-1")
    assert venue.error(trader, "order.mass_quote", quotes=LADDER)["data"]["reason"] == \
        "forbidden"
    assert venue.error(trader, "order.cancel_quotes")["data"]["reason"] == "forbidden"


def test_each_slot_costs_an_order_token(tmp_path):
    venue = InProcess(tmp_path / "data", "[limits.roles.market_maker]\norders = [1.0, 6]\n")
    maker = venue.session("maker-1")
    error = venue.error(maker, "order.mass_quote", quotes=[slot(f"1.9{i}0", 1, level=i)
                                                           for i in range(7)])
    assert (error["data"]["reason"], error["data"]["field"]) == ("invalid_params", "quotes")
    venue.tick(10)
    assert len(quotes(venue, maker, [slot(f"1.9{i}0", 1, level=i) for i in range(5)])) == 5
    orders = len(venue.venue.exchange.orders)
    error = venue.error(maker, "order.mass_quote", quotes=[slot("2.201", 1, "sell", i)
                                                           for i in range(3)])
    assert error["data"]["reason"] == "rate_limited" and error["data"]["retry_after_ms"] > 0
    assert len(venue.venue.exchange.orders) == orders
    venue.tick(3)
    assert len(quotes(venue, maker, [slot("2.201", 1, "sell", i) for i in range(3)])) == 3


def test_cancel_quotes_removes_quotes_only(venue):
    maker = venue.session("maker-1")
    quotes(venue, maker, LADDER + [slot("2.100", 1, symbol=OTHER)])
    plain = venue.result(maker, "order.place", symbol=SYMBOL, side="buy", qty=1, price="1.950")
    assert venue.result(maker, "order.cancel_quotes", symbol=OTHER) == {"cancelled": 1}
    assert venue.result(maker, "order.cancel_quotes") == {"cancelled": 4}
    assert venue.result(maker, "order.cancel_quotes") == {"cancelled": 0}
    assert [o["order_id"] for o in venue.result(maker, "order.list")] == [plain["order_id"]]
    assert venue.error(maker, "order.cancel_quotes", symbol="X")["data"]["reason"] == \
        "unknown_instrument"


def test_quote_slots_survive_a_crash_and_a_session_ending_cancels_them(make_server):
    """Over a real websocket: the slots are part of the journaled state (a requote after a
    restart replaces the same orders), and cancel-on-disconnect covers quotes."""
    live = make_server()

    async def first():
        ws = await Ws.open(live, "maker-1")
        placed = (await ws.result("order.mass_quote", quotes=LADDER))["quotes"]
        await ws.close()
        return [r["order"]["order_id"] for r in placed]
    ids = run(first())
    live.crash()
    again = live.restart()

    async def second():
        ws = await Ws.open(again, "maker-1")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        moved = (await ws.result("order.mass_quote",
                                 quotes=[dict(q, qty=q["qty"] - 1) for q in LADDER]))["quotes"]
        assert [r["order"]["order_id"] for r in moved] == ids
        assert [r["order"]["remaining_qty"] for r in moved] == [4, 9, 4, 9]
        await ws.close()
        watcher = await Ws.open(again)
        for _ in range(50):
            book = await watcher.result("market.book", symbol=SYMBOL)
            if not book["bids"]:
                break
            await asyncio.sleep(0.05)
        assert book["bids"] == [] and book["asks"] == []
        await watcher.close()
    run(second())


# Found by an adversarial review; each failed before its fix.

def test_a_requote_with_post_only_true_does_not_take_liquidity(venue):
    """post_only belongs to the request: a slot placed with post_only false and requoted
    with the default (true) at a crossing price is refused post_only_would_take, not filled
    (a replace keeps the order's own flag, so the slot's order is renewed instead)."""
    maker, seller = venue.session("maker-1"), venue.session("trader-1")
    [first] = quotes(venue, maker, [slot("2.000", 5)], post_only=False)
    assert first["error"] is None and first["order"]["status"] == "open"
    venue.result(seller, "order.place", symbol=SYMBOL, side="sell", qty=5, price="2.050")
    [again] = quotes(venue, maker, [slot("2.050", 5)])        # post_only: true (default)
    assert again["error"] is not None, ("a post-only requote took liquidity: "
                                        f"{again['order']}")
    assert again["error"]["data"]["reason"] == "post_only_would_take"
    assert venue.result(maker, "account.fills") == []


def test_a_refused_renewal_of_a_partly_filled_quote_leaves_the_slot_as_it_was(venue):
    """A partly filled quote asked for a crossing price is refused, and its order (with the
    lots it still shows) stays in the book: the change is one replace, refused whole."""
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    first = quotes(venue, maker, [slot("2.000", 5)])[0]["order"]
    venue.result(taker, "order.place", symbol=SYMBOL, side="sell", qty=2, price="2.000",
                 tif="ioc")
    venue.result(taker, "order.place", symbol=SYMBOL, side="sell", qty=5, price="2.100")
    [moved] = quotes(venue, maker, [slot("2.100", 5)])        # would take: refused
    assert moved["error"]["data"]["reason"] == "post_only_would_take"
    old = venue.result(maker, "order.get", order_id=first["order_id"])
    assert (old["status"], old["remaining_qty"]) == ("partially_filled", 3), old
    assert moved["order"] is not None and moved["order"]["order_id"] == first["order_id"]


def _mid_of_band(venue: InProcess, symbol: str) -> int:
    market = venue.venue.exchange.markets[symbol]
    return (market.band_low + market.band_high) // 2


def test_cancel_quotes_cancels_every_quote_when_one_has_closed_meanwhile(venue):
    """A quote whose contract closed since the last command (time moves on with the
    cancel) is no refusal: cancel_quotes goes on and removes the others."""
    maker = venue.session("maker-1")
    expiring = "H100-2026-12"            # its last trading time is 5.5 days after AS_OF noon
    price = format_price(_mid_of_band(venue, expiring) - 5)
    results = quotes(venue, maker, [slot(price, 1, symbol=expiring), slot("2.000", 5),
                                    slot("2.200", 5, "sell")])
    assert [r["error"] for r in results] == [None, None, None]
    venue.tick(6 * 86400)                # past the December contract's last trading time
    reply = venue.call(maker, "order.cancel_quotes")
    still_open = venue.result(maker, "order.list", symbol=SYMBOL)
    assert "result" in reply and still_open == [], (reply, still_open)
