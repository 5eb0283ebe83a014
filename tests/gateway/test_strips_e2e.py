"""Strips over a real websocket (PROTOCOL 1.1): order.place_strip and market.strip_quote."""
from __future__ import annotations

from live import Ws, run

LEGS = ["H100-2027-03", "H100-2027-04", "H100-2027-05"]
HOURS = [744, 720, 744]


def test_a_strip_fills_every_leg_or_nothing_and_a_resend_places_nothing(live_server):
    async def scenario():
        maker = await Ws.open(live_server, "maker-1")
        trader = await Ws.open(live_server, "trader-1")
        # Each leg offers 3 lots at 2.100 and 4 more at 2.150 (the last leg at 2.200).
        for symbol, dearer in zip(LEGS, ("2.150", "2.150", "2.200")):
            for price, qty in (("2.100", 3), (dearer, 4)):
                await maker.result("order.place", symbol=symbol, side="sell", qty=qty,
                                   price=price)
        quote = await trader.result("market.strip_quote", symbols=LEGS, side="buy", qty=5)
        # 3 at 2.100 and 2 at the dearer price per leg: legs 2.120, 2.120, 2.140.
        assert quote == {"available_qty": 5, "avg_price": f"{_mean([2.12, 2.12, 2.14])}",
                         "legs": [{"symbol": s, "avg_price": p} for s, p in
                                  zip(LEGS, ("2.120000", "2.120000", "2.140000"))]}
        too_low = await trader.error("order.place_strip", symbols=LEGS, side="buy", qty=5,
                                     price="2.120")
        assert too_low["data"]["reason"] == "strip_not_fillable" and too_low["code"] == 311
        params = dict(symbols=LEGS, side="buy", qty=5, price="2.130", client_order_id="s-1")
        strip = await trader.result("order.place_strip", **params)
        assert (strip["status"], strip["qty"], strip["filled_qty"]) == ("filled", 5, 5)
        assert strip["avg_price"] == quote["avg_price"]
        assert [leg["filled_qty"] for leg in strip["legs"]] == [5, 5, 5]
        again = await trader.result("order.place_strip", **params)
        assert again.pop("duplicate") is True and again == strip
        changed = await trader.error("order.place_strip", **{**params, "qty": 4})
        assert changed["data"]["reason"] == "duplicate_client_order_id"
        positions = {p["symbol"]: p["qty"] for p in await trader.result("account.positions")}
        assert [positions[s] for s in LEGS] == [5, 5, 5]
        # IOC: only 2 more lots are left in each leg; never a partial strip.
        rest = await trader.result("order.place_strip", symbols=LEGS, side="buy", qty=4,
                                   price="2.300", tif="ioc")
        assert (rest["status"], rest["filled_qty"]) == ("partially_filled", 2)
        empty = await trader.result("order.place_strip", symbols=LEGS, side="buy", qty=1,
                                    price="2.300", tif="ioc")
        assert (empty["status"], empty["filled_qty"], empty["avg_price"]) == \
            ("cancelled", 0, None)
        await maker.close()
        await trader.close()
    run(scenario())


def test_a_strip_that_is_no_strip_or_has_a_halted_leg_is_refused(live_server):
    async def scenario():
        trader = await Ws.open(live_server, "trader-1")
        admin = await Ws.open(live_server, "admin")
        gap = await trader.error("order.place_strip", symbols=[LEGS[0], LEGS[2]], side="sell",
                                 qty=1, price="2.000")
        assert (gap["data"]["reason"], gap["data"]["field"]) == ("invalid_strip", "symbols")
        await admin.result("admin.halt", symbol=LEGS[1])
        halted = await trader.error("order.place_strip", symbols=LEGS, side="sell", qty=1,
                                    price="2.000")
        assert (halted["data"]["reason"], halted["data"]["symbol"]) == \
            ("instrument_not_trading", LEGS[1])
        quoted = await trader.error("market.strip_quote", symbols=LEGS, side="sell", qty=1)
        assert quoted["data"]["symbol"] == LEGS[1]
        assert await trader.result("account.positions") == []
        await trader.close()
        await admin.close()
    run(scenario())


def _mean(prices: list[float]) -> str:
    """The hours-weighted mean of leg prices, as the wire writes it (6 decimals)."""
    micros = round(sum(h * round(p * 10**6) for h, p in zip(HOURS, prices)) / sum(HOURS))
    return f"{micros // 10**6}.{micros % 10**6:06d}"
