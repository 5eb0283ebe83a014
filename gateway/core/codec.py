"""The one place where wire values become engine values and back (DESIGN.md §5).

Inbound: decoded params (gateway.core.schema) -> engine commands, prices through
engine.prices (an off-tick price is an error, never rounded), times from
milliseconds to nanoseconds. Outbound: engine orders, levels and instruments
-> the dicts PROTOCOL.md describes, prices with exactly 3 decimals.
"""
from __future__ import annotations

import zlib
from fractions import Fraction

import msgspec

from clearing.messages import (
    Cascaded, ClearingRejected, CollateralMoved, DefaultCovered, InstrumentSettled, Liquidation,
    ListingRolled, MarginCall,
)
from engine.messages import (
    CancelOrder, CancelReason, InstrumentStatus, OrderRejected, OrderStatus, OrderType,
    PlaceOrder, RejectReason, ReplaceOrder, SelfTradePrevention, Side, StripExecuted,
    TimeInForce,
)
from engine.contracts import Symbol, cascades_into, format_symbol, parse_symbol
from engine.prices import (
    MoneyError, PriceError, format_money, format_price, parse_money, parse_price,
)
from gateway.core import schema
from gateway.core.errors import RpcError

NS_PER_MS = 1_000_000

SIDES = {"buy": Side.BUY, "sell": Side.SELL}
ORDER_TYPES = {t.name.lower(): t for t in OrderType}
TIFS = {t.name.lower(): t for t in TimeInForce}
STPS = {s.name.lower(): s for s in SelfTradePrevention}

SIDE_NAMES = {Side.BUY: "buy", Side.SELL: "sell"}
ORDER_TYPE_NAMES = {v: k for k, v in ORDER_TYPES.items()}
TIF_NAMES = {v: k for k, v in TIFS.items()}
STP_NAMES = {v: k for k, v in STPS.items()}
STATUS_NAMES = {s: s.name.lower() for s in InstrumentStatus}
# PROTOCOL.md has no "expired" order status: an expired GTD order is cancelled,
# with cancel_reason "expired" (an extension field).
ORDER_STATUS_NAMES = {s: s.name.lower() for s in OrderStatus}
ORDER_STATUS_NAMES[OrderStatus.EXPIRED] = "cancelled"

_decoders: dict[type, msgspec.json.Decoder] = {}


def decode_params(raw: msgspec.Raw, kind: type[schema.Params]) -> schema.Params:
    """Decode a request's params into the method's Struct.

    Raises:
        RpcError: invalid_params naming the field; invalid_quantity for a bad qty.
    """
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: msgspec.ValidationError) -> RpcError:
    """Turn msgspec's "Expected `int`, got `str` - at `$.qty`" into invalid_params, field qty;
    in an object within the params the field is its path ("debt.rate"); in a list, the
    list's name ("symbols" for `$.symbols[3]`)."""
    message = str(exc)
    path = message.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in message else None
    field = None if path is None else path.split("[", 1)[0]
    if message.startswith(("Object missing required field `",
                           "Object contains unknown field `")) and (path is None
                                                                    or "[" not in path):
        name = message.split("`")[1]
        field = name if path is None else f"{path}.{name}"
    return RpcError(RejectReason.INVALID_PARAMS, message, field=field)


def price(text: str | None, field: str) -> int | None:
    """Return a wire price in ticks (None stays None).

    Raises:
        RpcError: price_off_tick, or invalid_price for a malformed, zero or huge value.
    """
    if text is None:
        return None
    try:
        return parse_price(text, field)
    except PriceError as exc:
        raise RpcError(exc.reason, str(exc), field=exc.field) from None


def money(text: str, field: str = "amount") -> int:
    """Return a wire money string in micro-USD.

    Raises:
        RpcError: invalid_amount for anything but a non-negative decimal of up to 6 places.
    """
    try:
        return parse_money(text, field)
    except MoneyError as exc:
        raise RpcError(RejectReason.INVALID_AMOUNT, str(exc), field=exc.field) from None


def refusal(event: OrderRejected | ClearingRejected) -> RpcError:
    """The error of a refused command: the engine's reject (data.order_id names an order it
    concerned) or clearing's."""
    if type(event) is ClearingRejected:
        return RpcError(event.reason, event.detail, field=event.field)
    extra = {} if event.order_id is None else {"order_id": event.order_id}
    if event.symbol is not None:
        extra["symbol"] = event.symbol                    # the strip leg it is about
    return RpcError(event.reason, event.detail, field=event.field, **extra)


def average_price(paid: int, lots: int) -> str | None:
    """An average of tick prices in USD with 6 decimals (half to even), None for no lots:
    ``paid`` is ticks x lots (weighted by hours, with ``lots`` weighted alike)."""
    if not lots:
        return None
    micros = round(Fraction(paid * 1000, lots))        # 1 tick = 1000 micro-USD
    return f"{micros // 10**6}.{micros % 10**6:06d}"


def strip_view(ev: StripExecuted, duplicate: bool = False) -> dict:
    """order.place_strip's result, from the strip's event."""
    filled, total = ev.filled_qty, sum(hours for _, _, hours, _ in ev.legs)
    view = {
        "strip_id": ev.strip_id, "client_order_id": ev.client_order_id,
        "side": SIDE_NAMES[ev.side], "qty": ev.qty, "filled_qty": filled,
        "avg_price": average_price(sum(h * paid for _, _, h, paid in ev.legs), filled * total),
        "status": "filled" if filled == ev.qty else
                  "partially_filled" if filled else "cancelled",
        "legs": [{"symbol": symbol, "order_id": order_id, "filled_qty": filled,
                  "avg_price": average_price(paid, filled)}
                 for symbol, order_id, _, paid in ev.legs],
    }
    if duplicate:
        view["duplicate"] = True
    return view


def strip_quote_view(lots: int, legs: list) -> dict:
    """market.strip_quote's result: (symbol, hours, ticks x lots) per leg at ``lots``."""
    total = sum(hours for _, hours, _ in legs)
    return {"available_qty": lots,
            "avg_price": average_price(sum(h * paid for _, h, paid in legs), lots * total),
            "legs": [{"symbol": symbol, "avg_price": average_price(paid, lots)}
                     for symbol, _, paid in legs]}


def ms_to_ns(ms: int | None) -> int | None:
    return None if ms is None else ms * NS_PER_MS


def place_command(p: schema.Place, account_id: int, ts_ns: int) -> PlaceOrder:
    """Build the engine's PlaceOrder; the engine checks what depends on the instrument."""
    return PlaceOrder(
        ts_ns=ts_ns, account_id=account_id, symbol=p.symbol, side=SIDES[p.side], qty=p.qty,
        order_type=ORDER_TYPES[p.order_type], price=price(p.price, "price"),
        stop_price=price(p.stop_price, "stop_price"), tif=TIFS[p.tif],
        expire_at_ns=ms_to_ns(p.expire_at), post_only=p.post_only, reduce_only=p.reduce_only,
        display_qty=p.display_qty, client_order_id=p.client_order_id, stp=STPS[p.stp])


def replace_command(p: schema.Replace, account_id: int, ts_ns: int) -> ReplaceOrder:
    return ReplaceOrder(ts_ns=ts_ns, account_id=account_id, order_id=p.order_id,
                        client_order_id=p.client_order_id, price=price(p.price, "price"),
                        qty=p.qty)


def cancel_command(p: schema.OrderRef, account_id: int, ts_ns: int,
                   reason: CancelReason = CancelReason.USER) -> CancelOrder:
    return CancelOrder(ts_ns=ts_ns, account_id=account_id, order_id=p.order_id,
                       client_order_id=p.client_order_id, reason=reason)


def self_trade_prevented(order_id: int) -> RpcError:
    return RpcError(RejectReason.SELF_TRADE_PREVENTED,
                    f"self-trade prevention cancelled order {order_id} before it filled",
                    order_id=order_id)


# -- Outbound ---------------------------------------------------------------------

def opt_price(ticks: int | None) -> str | None:
    return None if ticks is None else format_price(ticks)


def ns_to_ms(ns: int | None) -> int | None:
    return None if ns is None else ns // NS_PER_MS


class FillView(msgspec.Struct, gc=False):
    """One fill in an order's ``fills``."""
    trade_id: int
    price: str
    qty: int
    liquidity: str          # maker | taker


class OrderView(msgspec.Struct, gc=False):
    """PROTOCOL.md's order object (a Struct: built and encoded faster than a dict).

    Extension fields (README): stop_price, expire_at, display_qty, post_only,
    reduce_only, stp, cancel_reason (why a cancelled order ended; "expired"
    for a GTD order that reached its expire_at), and duplicate on a resend.
    """
    order_id: int
    client_order_id: str | None
    symbol: str
    side: str
    type: str
    tif: str
    price: str | None
    stop_price: str | None
    qty: int
    filled_qty: int
    remaining_qty: int
    status: str
    fills: list[FillView]
    expire_at: int | None
    display_qty: int | None
    post_only: bool
    reduce_only: bool
    stp: str
    cancel_reason: str | None
    duplicate: bool | msgspec.UnsetType = msgspec.UNSET


def fill_view(trade_id: int, price_ticks: int, qty: int, maker: bool) -> FillView:
    return FillView(trade_id, format_price(price_ticks), qty, "maker" if maker else "taker")


def fill_row(trade_id: int, order_id: int, symbol: str, side: int, price_ticks: int, qty: int,
             fee: int, maker: bool, ts_ns: int) -> dict:
    """One fill of an account as account.fills and the ``fills`` channel show it."""
    return {"trade_id": trade_id, "order_id": order_id, "symbol": symbol,
            "side": "buy" if side == Side.BUY else "sell", "price": format_price(price_ticks),
            "qty": qty, "fee": format_money(fee), "liquidity": "maker" if maker else "taker",
            "time": ns_to_ms(ts_ns)}


def order_view(order, fills: list[FillView], cancel_reason: str | None = None) -> OrderView:
    """Return an engine Order as the wire's order object."""
    return OrderView(
        order.order_id, order.client_order_id, order.symbol, SIDE_NAMES[order.side],
        ORDER_TYPE_NAMES[order.order_type], TIF_NAMES[order.tif], opt_price(order.price),
        opt_price(order.stop_price), order.qty, order.filled_qty, order.leaves_qty,
        ORDER_STATUS_NAMES[order.status], fills, ns_to_ms(order.expire_at_ns),
        order.display_qty, order.post_only, order.reduce_only, STP_NAMES[order.stp],
        cancel_reason)


def instrument_view(market) -> dict:
    """Return a Market as an element of market.instruments."""
    inst = market.instrument
    return {
        "symbol": inst.symbol,
        "gpu_class": inst.gpu_class,
        "delivery_start": inst.delivery_start.isoformat(),
        "delivery_end": inst.delivery_end.isoformat(),
        "contract_hours": inst.contract_hours,
        "tick_size": format_price(1),
        "min_qty": inst.min_qty,
        "max_qty": inst.max_qty,
        "status": STATUS_NAMES[market.status],
        "halt_reason": market.halt_reason,                    # 1.1: null unless halted
        "last_trading_time": ns_to_ms(inst.last_trading_ns),
        # 1.1: the tenor, and what a quarter or year cascades into at its last trading time.
        "tenor": inst.kind,
        "cascades_into": [format_symbol(Symbol(inst.gpu_class, period)) for period in
                          cascades_into(parse_symbol(inst.symbol).period)],
        # Extensions: the band orders must stay inside, and its centre.
        "reference_price": format_price(market.reference_price),
        "band_low": format_price(market.band_low),
        "band_high": format_price(market.band_high),
    }


def settlement_curve(history, gpu_class: str, day) -> list[dict]:
    """market.curve with a date: the class's settlement prices of that day, in delivery
    order (the shorter first where two start together)."""
    out = []
    for symbol, price in history.by_day.get(day, {}).items():
        parsed = parse_symbol(symbol)
        if parsed.gpu_class == gpu_class:
            period = parsed.period
            out.append(((period.start, period.end), {
                "symbol": symbol, "delivery_start": period.start.isoformat(),
                "tenor": period.kind.value, "settlement_price": format_price(price)}))
    return [view for _, view in sorted(out, key=lambda pair: pair[0])]


def candle_view(candle: list) -> dict:
    start, open_, high, low, close, volume = candle
    return {"time": start, "open": format_price(open_), "high": format_price(high),
            "low": format_price(low), "close": format_price(close), "volume": volume}


def checksum(bids: list, asks: list) -> int:
    """PROTOCOL.md's book checksum over the top 10 levels of each side, best first.

    Args:
        bids, asks: Wire levels ``[price_str, qty, orders]``, best first.
    """
    text = ("|".join(f"{p}:{q}" for p, q, _ in bids[:10]) + "#"
            + "|".join(f"{p}:{q}" for p, q, _ in asks[:10]))
    return zlib.crc32(text.encode())



def summary_view(house, account) -> dict:
    """account.summary of one account (AccountConfig) at the current marks."""
    risk = house.risk
    ledger_account = house.ledger.accounts.get(account.account_id)
    collateral = 0 if ledger_account is None else ledger_account.collateral
    equity = risk.equity(account.account_id)
    maintenance, initial = risk.margin(account.account_id)
    return {"account": account.account, "collateral": format_money(collateral),
            "equity": format_money(equity), "unrealized_pnl": format_money(equity - collateral),
            "initial_margin": format_money(initial),
            "maintenance_margin": format_money(maintenance),
            "available": format_money(max(equity - initial, 0))}


def positions_view(house, account_id: int) -> list[dict]:
    """account.positions: every instrument the account holds or has held, by symbol.

    unrealized_pnl is the open position against its average entry at the mark;
    realized_pnl is what closing fills made against that average.
    """
    ledger, marks = house.ledger, house.risk.marks
    out = []
    account = ledger.accounts.get(account_id)
    for symbol, pos in sorted(account.positions.items() if account else ()):
        mark = marks.get(symbol, ledger.settlement_prices[symbol])
        avg = ledger.avg_price(symbol, pos)
        unrealized = ledger.unrealized(symbol, pos, mark)
        out.append({"symbol": symbol, "qty": pos.qty,
                    "avg_price": None if avg is None else format_price(max(1, round(avg))),
                    "realized_pnl": format_money(pos.realized_micros),
                    "unrealized_pnl": format_money(unrealized), "mark_price": format_price(mark)})
    return out


def index_view(index, now_ns: int) -> dict:
    """market.index of one class: its value now and its fixings, oldest first."""
    value, source = index.peek(now_ns)
    return {"gpu_class": index.gpu_class, "value": opt_price(value), "time": ns_to_ms(now_ns),
            "source": source,
            "fixings": [{"date": f.date.isoformat(), "value": opt_price(f.value)}
                        for f in index.fixings]}


def admin_view(ev, name_of) -> dict | None:
    """What the ``admin`` channel says of a clearing event, or None if it says nothing.

    Args:
        name_of: account_id -> the account's name.
    """
    kind = type(ev)
    time = ns_to_ms(ev.ts_ns)
    if kind is MarginCall:
        return {"type": "margin_call", "account": name_of(ev.account_id),
                "equity": format_money(ev.equity), "initial_margin": format_money(ev.initial),
                "maintenance_margin": format_money(ev.maintenance), "time": time}
    if kind is Liquidation:
        return {"type": "liquidation", "account": name_of(ev.account_id), "action": ev.action,
                "symbol": ev.symbol, "qty": ev.qty, "equity": format_money(ev.equity),
                "maintenance_margin": format_money(ev.maintenance), "time": time}
    if kind is DefaultCovered:
        return {"type": "default", "account": name_of(ev.account_id),
                "deficit": format_money(ev.deficit), "insurance_fund": format_money(ev.insurance),
                "mutualised": format_money(ev.mutualised),
                "uncovered": format_money(ev.uncovered), "time": time}
    if kind is CollateralMoved and ev.reason == "haircut" and ev.amount < 0:
        return {"type": "haircut", "account": name_of(ev.account_id),
                "amount": format_money(-ev.amount), "collateral": format_money(ev.balance),
                "time": time}
    if kind is InstrumentSettled:
        return {"type": "final_settlement", "symbol": ev.symbol, "price": format_price(ev.price),
                "fixings": ev.fixings, "carried": ev.carried, "time": time}
    if kind is Cascaded:
        return {"type": "cascaded", "symbol": ev.symbol, "into": ev.into,
                "price": format_price(ev.price),
                "accounts": [name_of(a) for a in ev.accounts], "time": time}
    if kind is ListingRolled:
        return {"type": "listing", "listed": ev.listed, "delisted": ev.delisted, "time": time}
    return None


def fixing_view(fixing, index_params, name_of) -> dict:
    """market.fixing: a fixing with every input and step (clearing.index's method), so that
    anyone can recompute it: sum(weight_ppb x price_nano) / 10^18 ticks, half to even."""
    return {
        "gpu_class": fixing.gpu_class, "date": fixing.date.isoformat(),
        "value": opt_price(fixing.value), "source": fixing.source, "carried": fixing.carried,
        "time": ns_to_ms(fixing.fixed_ns),
        "providers": [{"provider": name_of(p.provider_id),
                       "price": _scaled(p.price_nano, 12), "hours": p.hours,
                       "weight": _scaled(p.weight_ppb, 9), "excluded": p.excluded,
                       "reason": p.reason, "price_nano": p.price_nano,
                       "weight_ppb": p.weight_ppb} for p in fixing.providers],
        "external": None if fixing.external is None else {
            "provider": name_of(fixing.external.provider_id),
            "value": format_price(fixing.external.value),
            "time": ns_to_ms(fixing.external.observed_ns)},
        "method": {"window_hours": index_params.window_ns / 3_600_000_000_000,
                   "trim": _scaled(index_params.trim_bps, 4),
                   "max_deviation": _scaled(fixing.max_deviation_bps, 4),
                   "max_share": fixing.max_share, "min_providers": fixing.min_providers,
                   "sources": list(index_params.sources), "rounding": "half_even"},
    }


def _scaled(value: int, decimals: int) -> str:
    """An integer in units of 10^-decimals as an exact decimal string: (2100, 3) -> "2.100"."""
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 10**decimals)
    return f"{sign}{whole}.{part:0{decimals}d}"


def ticker_view(venue, feed, symbol: str) -> dict:
    """ticker.{symbol}: the feed's book and trades, and clearing's mark, index and open
    interest."""
    data = feed.symbols[symbol].ticker()
    house = venue.house
    inst = venue.exchange.markets[symbol].instrument
    data["open_interest"] = house.ledger.open_interest(symbol)
    data["mark_price"] = opt_price(house.marks[symbol].price)
    data["index_price"] = opt_price(house.index[inst.gpu_class].peek(venue.last_ts)[0])
    return data


def curve_view(venue, feed, gpu_class: str) -> list[dict]:
    """The forward curve of a class (market.curve, curve.{class}): every listed contract in
    delivery order (the shorter first where two start together: a month before its quarter
    before its year), as published; ``tenor`` and ``delivery_end`` are extensions."""
    out = []
    marks = venue.house.marks
    for market in venue.exchange.markets.values():
        inst = market.instrument
        if inst.gpu_class != gpu_class:
            continue
        published = feed.symbols[inst.symbol]
        bid, ask = published.book.top(True), published.book.top(False)
        out.append({"symbol": inst.symbol, "delivery_start": inst.delivery_start.isoformat(),
                    "mark_price": opt_price(marks[inst.symbol].price),
                    "best_bid": bid[0] if bid else None, "best_ask": ask[0] if ask else None,
                    "last_price": published.last_price, "tenor": inst.kind,
                    "delivery_end": inst.delivery_end.isoformat()})
    return sorted(out, key=lambda c: (c["delivery_start"], c["delivery_end"]))
