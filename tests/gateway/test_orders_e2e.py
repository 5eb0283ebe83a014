"""Order entry over a real websocket: results, idempotency, private streams, another's orders."""
from __future__ import annotations

import datetime

from engine.contracts import date_to_ns
from live import AS_OF, SYMBOL, Ws, run


def test_two_traders_trade_and_each_sees_their_fill(live_server):
    """A resting sell is taken by another account's buy; both results and fills streams agree."""
    async def scenario():
        seller = await Ws.open(live_server, "trader-1")
        buyer = await Ws.open(live_server, "trader-2")
        await seller.result("subscribe", channels=["orders", "fills"])
        sold = await seller.result("order.place", symbol=SYMBOL, side="sell", qty=10,
                                   price="2.15", client_order_id="s-1")
        assert (sold["status"], sold["remaining_qty"], sold["price"]) == ("open", 10, "2.150")
        bought = await buyer.result("order.place", symbol=SYMBOL, side="buy", qty=4,
                                    price="2.2", tif="ioc")
        assert bought["status"] == "filled" and bought["filled_qty"] == 4
        assert bought["fills"] == [{"trade_id": 1, "price": "2.150", "qty": 4,
                                    "liquidity": "taker"}]
        first = (await seller.note("orders"))["data"]
        assert first["order_id"] == sold["order_id"] and first["status"] == "open"
        update = (await seller.note("orders"))["data"]
        assert (update["status"], update["filled_qty"], update["remaining_qty"]) == \
            ("partially_filled", 4, 6)
        fills = (await seller.note("fills"))["data"]
        assert [(f["order_id"], f["side"], f["price"], f["qty"], f["liquidity"])
                for f in fills] == [(sold["order_id"], "sell", "2.150", 4, "maker")]
        got = await seller.result("order.get", client_order_id="s-1")
        assert got["filled_qty"] == 4 and got["fills"][0]["liquidity"] == "maker"
        await seller.close()
        await buyer.close()
    run(scenario())


def test_resending_an_order_returns_it_and_places_nothing(live_server):
    """The same client_order_id and parameters gives the order back with duplicate: true."""
    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        params = dict(symbol=SYMBOL, side="buy", qty=3, price="2.000", client_order_id="dup-1")
        first = await ws.result("order.place", **params)
        again = await ws.result("order.place", **{**params, "price": "2"})
        assert again.pop("duplicate") is True and again == first
        changed = await ws.error("order.place", **{**params, "qty": 4})
        assert changed["data"]["reason"] == "duplicate_client_order_id"
        assert changed["code"] == 306
        assert len(await ws.result("order.list")) == 1
        await ws.close()
    run(scenario())


def test_an_order_stays_retrievable_after_it_closes(live_server):
    """A cancelled order is still found by client_order_id, and a resend returns it."""
    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        params = dict(symbol=SYMBOL, side="sell", qty=2, price="2.200", client_order_id="c-9")
        placed = await ws.result("order.place", **params)
        cancelled = await ws.result("order.cancel", client_order_id="c-9")
        assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == "user"
        assert (await ws.result("order.get", order_id=placed["order_id"]))["status"] == "cancelled"
        again = await ws.result("order.place", **params)
        assert again["duplicate"] is True and again["status"] == "cancelled"
        assert await ws.result("order.list") == []
        await ws.close()
    run(scenario())


def test_another_accounts_order_is_unknown(live_server):
    """Cancelling, replacing or reading another account's order is unknown_order; it stays."""
    async def scenario():
        owner = await Ws.open(live_server, "trader-1")
        other = await Ws.open(live_server, "trader-2")
        placed = await owner.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                    price="2.000", client_order_id="mine")
        for method, params in (("order.cancel", {"order_id": placed["order_id"]}),
                               ("order.replace", {"order_id": placed["order_id"], "qty": 5}),
                               ("order.get", {"order_id": placed["order_id"]}),
                               ("order.cancel", {"client_order_id": "mine"})):
            error = await other.error(method, **params)
            assert error["data"]["reason"] == "unknown_order", (method, error)
        assert (await owner.result("order.get", order_id=placed["order_id"]))["status"] == "open"
        await owner.close()
        await other.close()
    run(scenario())


def test_a_gtd_order_expires_on_the_servers_timer(live_server):
    """A GTD order past its expire_at is ended by the timer: status cancelled, reason expired."""
    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        await ws.result("subscribe", channels=["orders"])
        now_ms = (await ws.result("session.test"))["server_time"]
        placed = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000",
                                 tif="gtd", expire_at=now_ms + 300)
        assert placed["status"] == "open" and placed["expire_at"] == now_ms + 300
        while True:
            data = (await ws.note("orders"))["data"]
            if data["status"] != "open":
                break
        assert (data["order_id"], data["status"], data["cancel_reason"]) == \
            (placed["order_id"], "cancelled", "expired")
        assert await ws.result("order.list") == []
        await ws.close()
    run(scenario())


def test_the_account_rate_limit_spans_its_connections(make_server):
    """Two connections of one account share the account's order bucket."""
    live = make_server("[limits.roles.trader]\norders = [1000.0, 1000]\n"
                       "account_orders = [0.001, 4]\n")

    async def scenario():
        one = await Ws.open(live, "trader-1")
        two = await Ws.open(live, "trader-1")
        other = await Ws.open(live, "trader-2")
        for ws in (one, two, one, two):
            await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000")
        for ws in (one, two):
            error = await ws.error("order.place", symbol=SYMBOL, side="buy", qty=1,
                                   price="2.000")
            assert error["data"]["reason"] == "rate_limited"
            assert error["data"]["retry_after_ms"] > 1000
        assert await other.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.0")
        for ws in (one, two, other):
            await ws.close()
    run(scenario())


def test_an_engine_exception_halts_that_instrument(live_server):
    """A command the engine fails on (a bug) halts its instrument and answers internal_error."""
    from engine.messages import PlaceOrder, Side
    from gateway.core.errors import RpcError

    server = live_server.server
    bad = PlaceOrder(ts_ns=server.venue.now(), account_id=1, symbol=SYMBOL, side=Side.BUY,
                     qty=2**70, price=2000)      # past int64: the wire could never send it

    def submit():
        try:
            server.core.submit(bad)
        except RpcError as exc:
            return exc.reason
    assert live_server.call(submit) == "internal_error"

    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        error = await ws.error("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000")
        assert error["data"]["reason"] == "instrument_not_trading"
        listed = {i["symbol"]: i for i in await ws.result("market.instruments")}
        assert listed[SYMBOL]["halt_reason"] == \
            "internal error on PlaceOrder; operations are looking"
        other = await ws.result("order.place", symbol="H100-2027-04", side="buy", qty=1,
                                price="2.000")
        assert other["status"] == "open"
        await ws.close()
    run(scenario())


def test_cancel_answers_with_its_own_order_when_time_closed_another(make_server):
    """Time passing an instrument's last trading time closes its orders first; the cancel
    still answers with the order it named, and cancel_all counts only what it cancelled."""
    now = [date_to_ns(AS_OF) + 12 * 3600 * 10**9]   # the listing day, whatever day it is
    live = make_server(clock=lambda: now[0])

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        closing = await ws.result("order.place", symbol="A100-2026-12", side="buy", qty=1,
                                  price="1.100")
        target = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000")
        await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.001")
        now[0] = date_to_ns(datetime.date(2026, 12, 1)) + 1      # past A100-2026-12's last day
        cancelled = await ws.result("order.cancel", order_id=target["order_id"])
        assert (cancelled["order_id"], cancelled["cancel_reason"]) == (target["order_id"], "user")
        got = await ws.result("order.get", order_id=closing["order_id"])
        assert got["cancel_reason"] == "instrument_closed"
        assert await ws.result("order.cancel_all", symbol=SYMBOL) == {"cancelled": 1}
        await ws.close()
    run(scenario())


def test_open_orders_are_capped_per_account_and_a_resend_still_answers(make_server):
    """Past max_open_orders a new order is too_many_orders; resending an existing one is not."""
    live = make_server("[limits.roles.trader]\nmax_open_orders = 2\n")

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        first = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000",
                                client_order_id="k-1")
        await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.001")
        error = await ws.error("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.002")
        assert (error["code"], error["data"]["reason"], error["data"]["limit"]) == \
            (410, "too_many_orders", 2)
        again = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000",
                                client_order_id="k-1")
        assert again["duplicate"] and again["order_id"] == first["order_id"]
        await ws.result("order.cancel", order_id=first["order_id"])
        assert await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.002")
        await ws.close()
    run(scenario())


def test_reduce_only_is_cut_to_the_position_and_goes_with_it(live_server):
    """Long 3: a reduce-only sell of 5 is placed for 3 (the result says so) and another is
    refused; selling the position elsewhere cuts it, then cancels it, and the orders
    channel and order.get show both, with cancel_reason reduce_only."""
    async def scenario():
        trader = await Ws.open(live_server, "trader-1")
        other = await Ws.open(live_server, "trader-2")
        await other.result("order.place", symbol=SYMBOL, side="sell", qty=3, price="2.100")
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=3, price="2.100",
                            tif="ioc")
        await trader.result("subscribe", channels=["orders"])
        placed = await trader.result("order.place", symbol=SYMBOL, side="sell", qty=5,
                                     price="2.300", reduce_only=True, client_order_id="ro-1")
        assert (placed["qty"], placed["remaining_qty"], placed["status"], placed["reduce_only"]) \
            == (3, 3, "open", True)
        refused = await trader.error("order.place", symbol=SYMBOL, side="sell", qty=1,
                                     price="2.250", reduce_only=True)
        assert (refused["data"]["reason"], refused["data"]["field"]) == \
            ("reduce_only_would_increase", "reduce_only")

        async def update():                     # the next orders message about it
            while True:
                data = (await trader.note("orders"))["data"]
                if data["order_id"] == placed["order_id"]:
                    return data
        assert (await update())["qty"] == 3
        for lots in (2, 1):
            await other.result("order.place", symbol=SYMBOL, side="buy", qty=lots,
                               price="2.050")
            await trader.result("order.place", symbol=SYMBOL, side="sell", qty=lots,
                                price="2.050", tif="ioc")
        cut = await update()
        assert (cut["qty"], cut["remaining_qty"], cut["status"]) == (1, 1, "open")
        gone = await update()
        assert (gone["status"], gone["cancel_reason"]) == ("cancelled", "reduce_only")
        got = await trader.result("order.get", client_order_id="ro-1")
        assert (got["qty"], got["filled_qty"], got["status"], got["cancel_reason"]) == \
            (1, 0, "cancelled", "reduce_only")
        await trader.close()
        await other.close()
    run(scenario())
