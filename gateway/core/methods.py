"""The JSON-RPC methods of PROTOCOL.md: who may call each, and what it does.

Each handler takes the server, the calling session and its decoded params,
and returns the result or raises RpcError. Orders go to the engine as
commands through ``server.submit``; reads look at the engine or the feed.
"""
from __future__ import annotations

import datetime

from typing import Callable, NamedTuple

from engine.messages import (
    CancelAll, CancelReason, InstrumentStatus, OrderAccepted, OrderCancelled, OrderDuplicate,
    OrderRejected, OrderReplaced, OrderStatus, RejectReason, SetInstrumentStatus,
)
from clearing.messages import (
    Deposit, FixIndex, IndexFixed, IndexValue, SetExternalIndex, Settle, Settled,
    SubmitObservation, Withdraw,
)
from gateway.core import codec, schema
from gateway.core.errors import RpcError
from gateway.core.auth import HOUSE_ACCOUNTS
from gateway.core.limits import ORDER, REQUEST, SUBSCRIBE

TRADING = frozenset({"trader", "market_maker"})
ADMIN = frozenset({"admin"})
PROVIDERS = frozenset({"index_provider"})


class Method(NamedTuple):
    handler: Callable
    params: type[schema.Params]
    category: str                      # which rate-limit bucket it draws on
    roles: frozenset[str] | None       # None: anyone, logged in or not


def _command_error(events: list) -> None:
    for ev in events:
        if type(ev) is OrderRejected:
            raise codec.rejected(ev)


def _own_order(server, session, order_id: int | None, client_order_id: str | None):
    order = server.venue.find(session.account_id, order_id, client_order_id)
    if order is None:
        raise RpcError(RejectReason.UNKNOWN_ORDER, "no such order of this account",
                       field="order_id" if order_id is not None else "client_order_id")
    return order


def _require_ref(p) -> None:
    if p.order_id is None and p.client_order_id is None:
        raise RpcError("invalid_params", "name the order: order_id or client_order_id",
                       field="order_id")


# -- Session ------------------------------------------------------------------------

def login(server, session, p: schema.Login):
    return server.login(session, p)


def test(server, session, p):
    """The exchange's clock (what orders are stamped with, what expire_at is compared to)."""
    return {"server_time": server.venue.now() // codec.NS_PER_MS}


def heartbeat(server, session, p: schema.Heartbeat):
    server.set_heartbeat(session, p.interval)
    return {"interval": p.interval}


def cancel_on_disconnect(server, session, p: schema.CancelOnDisconnect):
    session.cancel_on_disconnect = p.enabled
    return {"enabled": p.enabled}


# -- Orders -------------------------------------------------------------------------

def place(server, session, p: schema.Place):
    account_id = session.account_id
    exchange = server.venue.exchange
    limit = session.role_limits.max_open_orders
    if exchange.open_order_count(account_id) >= limit and not (
            p.client_order_id and exchange.order_by_client_id(account_id, p.client_order_id)):
        raise RpcError(RejectReason.TOO_MANY_ORDERS, f"the account has {limit} open orders, the most "
                       f"its role may have", limit=limit)
    events = server.submit(codec.place_command(p, account_id, server.venue.now()))
    _command_error(events)
    for ev in events:
        if type(ev) is OrderDuplicate:
            order = exchange.order(ev.order_id)
            if order.closed_ns is None:     # a resend: this session now answers for it
                server.placed(session, order.order_id)
            view = server.venue.view(order)
            view.duplicate = True
            return view
        if type(ev) is OrderAccepted:
            server.placed(session, ev.order_id)
            order = exchange.order(ev.order_id)
            view = server.venue.view(order)
            if (order.status is OrderStatus.CANCELLED and order.filled_qty == 0
                    and view.cancel_reason == "self_trade"):
                raise codec.self_trade_prevented(order.order_id)
            return view
    raise AssertionError(f"order.place produced no outcome: {events}")


def replace(server, session, p: schema.Replace):
    _require_ref(p)
    events = server.submit(codec.replace_command(p, session.account_id, server.venue.now()))
    _command_error(events)
    for ev in events:
        if type(ev) is OrderReplaced:
            return server.venue.view(server.venue.exchange.order(ev.order_id))
    raise AssertionError(f"order.replace produced no outcome: {events}")


def cancel(server, session, p: schema.OrderRef):
    _require_ref(p)
    target = server.venue.find(session.account_id, p.order_id, p.client_order_id)
    events = server.submit(codec.cancel_command(p, session.account_id, server.venue.now()))
    _command_error(events)
    # Not just any OrderCancelled: the passage of time may have closed other orders first.
    return server.venue.view(server.venue.exchange.order(target.order_id))


def cancel_all(server, session, p: schema.SymbolFilter):
    if p.symbol is not None:
        server.market(p.symbol)
    events = server.submit(CancelAll(ts_ns=server.venue.now(), account_id=session.account_id,
                                     symbol=p.symbol))
    _command_error(events)
    return {"cancelled": sum(1 for ev in events if type(ev) is OrderCancelled
                             and ev.reason is CancelReason.USER
                             and ev.account_id == session.account_id)}


def list_orders(server, session, p: schema.SymbolFilter):
    if p.symbol is not None:
        server.market(p.symbol)
    return [server.venue.view(o)
            for o in server.venue.exchange.open_orders(session.account_id, p.symbol)]


def get_order(server, session, p: schema.OrderRef):
    _require_ref(p)
    return server.venue.view(_own_order(server, session, p.order_id, p.client_order_id))


# -- Market data --------------------------------------------------------------------

def instruments(server, session, p):
    return [codec.instrument_view(m) for m in server.venue.exchange.markets.values()]


def book(server, session, p: schema.BookQuery):
    server.market(p.symbol)
    snapshot = server.feed.symbols[p.symbol].book.snapshot(p.depth)
    return {"symbol": p.symbol, "seq": snapshot["seq"], "bids": snapshot["bids"],
            "asks": snapshot["asks"], "checksum": snapshot["checksum"]}


def trades(server, session, p: schema.TradesQuery):
    server.market(p.symbol)
    kept = list(server.feed.symbols[p.symbol].trades)
    return kept[:-p.limit - 1:-1]       # newest first


def subscribe(server, session, p: schema.Channels):
    return {"channels": server.subscribe(session, p.channels)}


def unsubscribe(server, session, p: schema.Channels):
    return {"channels": server.unsubscribe(session, p.channels)}


# -- Accounts and the index ---------------------------------------------------------

def summary(server, session, p):
    return codec.summary_view(server.house, session.account)


def positions(server, session, p):
    return codec.positions_view(server.house, session.account_id)


def account_fills(server, session, p: schema.FillsQuery):
    if p.symbol is not None:
        server.market(p.symbol)
    return server.venue.account_fills.page(session.account_id, p.symbol, p.limit, p.before)


def curve(server, session, p: schema.GpuClassQuery):
    if p.gpu_class not in server.house.index:
        raise RpcError(RejectReason.UNKNOWN_GPU_CLASS, f"no GPU class {p.gpu_class!r} is listed",
                       field="gpu_class")
    return curve_of(server, p.gpu_class)


def curve_of(server, gpu_class: str) -> list[dict]:
    """The forward curve of a class: every listed contract in delivery order, as published."""
    out = []
    for market in server.venue.exchange.markets.values():
        inst = market.instrument
        if inst.gpu_class != gpu_class:
            continue
        feed = server.feed.symbols[inst.symbol]
        bid, ask = feed.book.top(True), feed.book.top(False)
        out.append({"symbol": inst.symbol, "delivery_start": inst.delivery_start.isoformat(),
                    "mark_price": codec.opt_price(server.house.marks[inst.symbol].price),
                    "best_bid": bid[0] if bid else None, "best_ask": ask[0] if ask else None,
                    "last_price": feed.last_price})
    return sorted(out, key=lambda c: (c["delivery_start"], c["symbol"]))


def index_submit(server, session, p: schema.IndexSubmit):
    ts = server.venue.now()
    observed_ns = ts if p.time is None else codec.ms_to_ns(p.time)
    price = codec.price(p.price, "price")
    if p.external:      # a published index value from a trusted provider; hours do not apply
        command = SetExternalIndex(ts_ns=ts, provider_id=session.account_id,
                                   gpu_class=p.gpu_class, value=price, observed_ns=observed_ns)
    else:
        command = SubmitObservation(ts_ns=ts, provider_id=session.account_id,
                                    gpu_class=p.gpu_class, price=price, hours=p.hours,
                                    observed_ns=observed_ns)
    events = server.submit(command)
    codec.clearing_error(events)
    value = next(ev for ev in events if type(ev) is IndexValue)
    return {"accepted": True, "index_value": codec.opt_price(value.value)}


def market_fixing(server, session, p: schema.FixingQuery):
    index = server.house.index.get(p.gpu_class)
    if index is None:
        raise RpcError(RejectReason.UNKNOWN_GPU_CLASS, f"no GPU class {p.gpu_class!r} is listed",
                       field="gpu_class")
    found = index.daily_fixings(p.date, p.date + datetime.timedelta(days=1))
    if not found:
        raise RpcError(RejectReason.NO_FIXING, f"{p.gpu_class} has no fixing dated {p.date.isoformat()}",
                       field="date")
    return codec.fixing_view(found[0], index.params, server.account_name)


def market_index(server, session, p: schema.IndexQuery):
    index = server.house.index.get(p.gpu_class)
    if index is None:
        raise RpcError(RejectReason.UNKNOWN_GPU_CLASS, f"no GPU class {p.gpu_class!r} is listed",
                       field="gpu_class")
    view = codec.index_view(index, server.venue.now())
    if p.history:
        view["history"] = [{"time": t, "value": v}
                           for t, v in server.feed.index_history.get(p.gpu_class, ())]
    return view


# -- Operations ---------------------------------------------------------------------

def _cash(server, p: schema.CashMove, command):
    account = server.accounts.by_name.get(p.account) or HOUSE_ACCOUNTS.get(p.account)
    if account is None:
        raise RpcError(RejectReason.UNKNOWN_ACCOUNT, f"no account {p.account[:64]!r}", field="account")
    amount = codec.money(p.amount)
    events = server.submit(command(ts_ns=server.venue.now(), account_id=account.account_id,
                                   amount=amount))
    codec.clearing_error(events)
    return codec.summary_view(server.house, account)


def deposit(server, session, p: schema.CashMove):
    return _cash(server, p, Deposit)


def withdraw(server, session, p: schema.CashMove):
    return _cash(server, p, Withdraw)


def fix_index(server, session, p: schema.GpuClassFilter):
    events = server.submit(FixIndex(ts_ns=server.venue.now(), gpu_class=p.gpu_class))
    codec.clearing_error(events)
    return [{"gpu_class": ev.fixing.gpu_class, "date": ev.fixing.date.isoformat(),
             "value": codec.opt_price(ev.fixing.value)}
            for ev in events if type(ev) is IndexFixed]


def settle(server, session, p):
    events = server.submit(Settle(ts_ns=server.venue.now()))
    codec.clearing_error(events)
    settled = next(ev for ev in events if type(ev) is Settled)
    return {"settlement_prices": {s: codec.format_price(v) for s, v in settled.prices.items()}}


def _set_status(server, symbol: str, status: InstrumentStatus):
    market = server.market(symbol)
    events = server.submit(SetInstrumentStatus(ts_ns=server.venue.now(), symbol=symbol,
                                               status=status))
    _command_error(events)
    return codec.instrument_view(market)


def halt(server, session, p: schema.SymbolOnly):
    return _set_status(server, p.symbol, InstrumentStatus.HALTED)


def resume(server, session, p: schema.SymbolOnly):
    return _set_status(server, p.symbol, InstrumentStatus.OPEN)


def state(server, session, p: schema.NoParams):
    """The last committed journal seq and the digest of the state after it (an extension:
    an operator compares it with ``gpux journal verify`` of the same data directory)."""
    return server.state()


METHODS: dict[str, Method] = {
    "auth.login": Method(login, schema.Login, REQUEST, None),
    "session.test": Method(test, schema.NoParams, REQUEST, None),
    "session.heartbeat": Method(heartbeat, schema.Heartbeat, REQUEST, None),
    "session.cancel_on_disconnect": Method(cancel_on_disconnect, schema.CancelOnDisconnect,
                                           REQUEST, None),
    "order.place": Method(place, schema.Place, ORDER, TRADING),
    "order.replace": Method(replace, schema.Replace, ORDER, TRADING),
    "order.cancel": Method(cancel, schema.OrderRef, ORDER, TRADING),
    "order.cancel_all": Method(cancel_all, schema.SymbolFilter, ORDER, TRADING),
    "order.list": Method(list_orders, schema.SymbolFilter, REQUEST, TRADING),
    "order.get": Method(get_order, schema.OrderRef, REQUEST, TRADING),
    "market.instruments": Method(instruments, schema.NoParams, REQUEST, None),
    "market.book": Method(book, schema.BookQuery, REQUEST, None),
    "market.trades": Method(trades, schema.TradesQuery, REQUEST, None),
    "subscribe": Method(subscribe, schema.Channels, SUBSCRIBE, None),
    "unsubscribe": Method(unsubscribe, schema.Channels, SUBSCRIBE, None),
    "account.summary": Method(summary, schema.NoParams, REQUEST, TRADING),
    "account.positions": Method(positions, schema.NoParams, REQUEST, TRADING),
    "account.fills": Method(account_fills, schema.FillsQuery, REQUEST, TRADING),
    "market.curve": Method(curve, schema.GpuClassQuery, REQUEST, None),
    "index.submit": Method(index_submit, schema.IndexSubmit, REQUEST, PROVIDERS),
    "market.index": Method(market_index, schema.IndexQuery, REQUEST, None),
    "market.fixing": Method(market_fixing, schema.FixingQuery, REQUEST, None),
    "admin.deposit": Method(deposit, schema.CashMove, REQUEST, ADMIN),
    "admin.withdraw": Method(withdraw, schema.CashMove, REQUEST, ADMIN),
    "admin.fix_index": Method(fix_index, schema.GpuClassFilter, REQUEST, ADMIN),
    "admin.settle": Method(settle, schema.NoParams, REQUEST, ADMIN),
    "admin.halt": Method(halt, schema.SymbolOnly, REQUEST, ADMIN),
    "admin.resume": Method(resume, schema.SymbolOnly, REQUEST, ADMIN),
    "admin.state": Method(state, schema.NoParams, REQUEST, ADMIN),
}
