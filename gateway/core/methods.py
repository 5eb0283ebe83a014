"""The JSON-RPC methods of PROTOCOL.md: who may call each, and what it does.

Each handler takes the request core (gateway.core.requests), the calling
session and its decoded params, and returns the result or raises RpcError.
Commands go through ``core.submit``, which returns their Outcome (the refusal,
the order placed, its view); reads look at the venue or the feed.
"""
from __future__ import annotations

import datetime

from typing import Callable, NamedTuple

import msgspec

from engine.messages import (
    CancelAll, CancelOrder, InstrumentStatus, OrderAccepted, OrderCancelled, OrderDuplicate,
    OrderReduced, OrderReplaced, OrderType, PlaceOrder, PlaceStrip, RejectReason, ReplaceOrder,
    SetInstrumentStatus, Side, StripExecuted, TimeInForce,
)
from clearing.messages import (
    Deposit, FixIndex, IndexFixed, IndexValue, SetExternalIndex, Settle, Settled,
    SubmitObservation, Withdraw,
)
from gateway.core import analytics, codec, schema
from gateway.core.errors import RpcError
from gateway.core.auth import HOUSE_ACCOUNTS
from gateway.core.limits import ORDER, REQUEST, SUBSCRIBE
from gateway.core.effects import Heartbeat
from gateway.core.venue import QUOTE_PREFIX

TRADING = frozenset({"trader", "market_maker"})
MAKERS = frozenset({"market_maker"})
ADMIN = frozenset({"admin"})
PROVIDERS = frozenset({"index_provider"})


class Method(NamedTuple):
    handler: Callable
    params: type[schema.Params]
    category: str                      # which rate-limit bucket it draws on
    roles: frozenset[str] | None       # None: anyone, logged in or not


def _refused(outcome) -> None:
    """Raise the command's refusal (the engine's or clearing's), if it was refused."""
    if outcome.refused is not None:
        raise codec.refusal(outcome.refused)


def _own_order(core, session, order_id: int | None, client_order_id: str | None):
    order = core.venue.find(session.account_id, order_id, client_order_id)
    if order is None:
        raise RpcError(RejectReason.UNKNOWN_ORDER, "no such order of this account",
                       field="order_id" if order_id is not None else "client_order_id")
    return order


def _require_ref(p) -> None:
    if p.order_id is None and p.client_order_id is None:
        raise RpcError(RejectReason.INVALID_PARAMS, "name the order: order_id or client_order_id",
                       field="order_id")


# -- Session ------------------------------------------------------------------------

def login(core, session, p: schema.Login):
    return core.login(session, p)


def test(core, session, p):
    """The exchange's clock (what orders are stamped with, what expire_at is compared to)."""
    return {"server_time": core.venue.now() // codec.NS_PER_MS}


def heartbeat(core, session, p: schema.Heartbeat):
    session.heartbeat_s = p.interval
    core.effect(Heartbeat(p.interval))
    return {"interval": p.interval}


def cancel_on_disconnect(core, session, p: schema.CancelOnDisconnect):
    core.guard(session, p.enabled)
    return {"enabled": p.enabled}


# -- Orders -------------------------------------------------------------------------

def place(core, session, p: schema.Place):
    account_id = session.account_id
    # A resend is answered even at the limit; the archive is asked only then.
    if _at_limit(core, session) and not (
            p.client_order_id and core.venue.find(account_id, None, p.client_order_id)):
        _room_for_an_order(core, session)
    outcome = core.submit(codec.place_command(p, account_id, core.venue.now()))
    return _placed(core, session, outcome)


def _at_limit(core, session) -> bool:
    return core.venue.exchange.open_order_count(session.account_id) \
        >= session.role_limits.max_open_orders


def _room_for_an_order(core, session) -> None:
    if _at_limit(core, session):
        limit = session.role_limits.max_open_orders
        raise RpcError(RejectReason.TOO_MANY_ORDERS, f"the account has {limit} open orders, "
                       f"the most its role may have", limit=limit)


def _placed(core, session, outcome):
    """The reply to a place: the order's view, or the refusal."""
    _refused(outcome)
    ev = outcome.order_event
    if type(ev) is OrderDuplicate:
        if _is_open(core, ev.order_id):     # a resend: this session now answers for it
            core.remember(session, ev.order_id)
        return msgspec.structs.replace(outcome.view(ev.order_id), duplicate=True)
    if type(ev) is OrderAccepted:
        core.remember(session, ev.order_id)
        view = outcome.view(ev.order_id)
        if view.status == "cancelled" and view.filled_qty == 0 \
                and view.cancel_reason == "self_trade" and not _touched_others(outcome, ev):
            raise codec.self_trade_prevented(ev.order_id)       # an error: nothing changed
        return view
    raise AssertionError(f"order.place produced no outcome: {outcome.events}")


def _touched_others(outcome, accepted: OrderAccepted) -> bool:
    """Whether placing the order changed another order (self-trade prevention's decrement
    or cancel_both reduce or cancel the resting one): then the answer is the order, not an
    error, since an error means that nothing changed."""
    return any(type(ev) in (OrderCancelled, OrderReduced) and ev.order_id != accepted.order_id
               for ev in outcome.events)


def place_strip(core, session, p: schema.PlaceStrip):
    """A strip (PROTOCOL 1.1): all or none across its legs. A resend with the same
    client_order_id and parameters answers the strip it placed, with duplicate: true."""
    account_id, venue = session.account_id, core.venue
    side, limit = codec.SIDES[p.side], codec.price(p.price, "price")
    tif = TimeInForce.FOK if p.tif == "fok" else TimeInForce.IOC
    if p.client_order_id is not None:
        done = venue.strip(account_id, p.client_order_id)
        if done is not None:
            if ([leg[0] for leg in done.legs], done.side, done.qty, done.price, done.tif) != (
                    list(p.symbols), side, p.qty, limit, tif):
                raise RpcError(RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                               f"client_order_id {p.client_order_id!r} is strip "
                               f"{done.strip_id}, placed with other parameters",
                               field="client_order_id")
            return codec.strip_view(done, duplicate=True)
    outcome = core.submit(PlaceStrip(ts_ns=venue.now(), account_id=account_id,
                                     symbols=list(p.symbols), side=side, qty=p.qty,
                                     price=limit, tif=tif, client_order_id=p.client_order_id))
    _refused(outcome)
    [done] = outcome.of_type(StripExecuted)
    return codec.strip_view(done)


def strip_quote(core, session, p: schema.StripQuote):
    """What a strip of up to ``qty`` per leg would fill at now (PROTOCOL 1.1)."""
    try:
        lots, legs = core.venue.exchange.strip_quote(list(p.symbols), codec.SIDES[p.side], p.qty)
    except ValueError as exc:
        extra = {"symbol": exc.symbol} if exc.symbol is not None else {}
        raise RpcError(exc.reason, str(exc), field=exc.field, **extra) from None
    return codec.strip_quote_view(lots, legs)


def _is_open(core, order_id: int) -> bool:
    order = core.venue.exchange.order(order_id)
    return order is not None and order.closed_ns is None


def replace(core, session, p: schema.Replace):
    _require_ref(p)
    outcome = core.submit(codec.replace_command(p, session.account_id, core.venue.now()))
    _refused(outcome)
    if type(outcome.order_event) is OrderReplaced:
        return outcome.view(outcome.order_event.order_id)
    raise AssertionError(f"order.replace produced no outcome: {outcome.events}")


def cancel(core, session, p: schema.OrderRef):
    _require_ref(p)
    target = core.venue.find(session.account_id, p.order_id, p.client_order_id)
    outcome = core.submit(codec.cancel_command(p, session.account_id, core.venue.now()))
    _refused(outcome)
    # Not just any OrderCancelled: the passage of time may have closed other orders first.
    return outcome.view(target.order_id)


def cancel_all(core, session, p: schema.SymbolFilter):
    if p.symbol is not None:
        core.market(p.symbol)
    outcome = core.submit(CancelAll(ts_ns=core.venue.now(), account_id=session.account_id,
                                    symbol=p.symbol))
    _refused(outcome)
    return {"cancelled": outcome.user_cancels.get(session.account_id, 0)}


def mass_quote(core, session, p: schema.MassQuote):
    """Set up to 100 quote slots at once; each slot's refusal is its own (PROTOCOL.md 1.1)."""
    slots = [(q.symbol, q.side, q.level) for q in p.quotes]
    if len(set(slots)) != len(slots):
        raise RpcError(RejectReason.INVALID_PARAMS,
                       "a quote slot (symbol, side, level) appears twice",
                       field="quotes")
    core.charge_orders(session, len(p.quotes) - 1, "quotes")
    results = []
    for q in p.quotes:
        try:
            order, error = _quote(core, session, q, p.post_only), None
            if order is not None and order.remaining_qty and order.status != "cancelled":
                core.remember(session, order.order_id)      # this session answers for it
        except RpcError as exc:
            order, error = _slot_order(core, session, q), exc.to_wire()
        results.append({"symbol": q.symbol, "side": q.side, "level": q.level, "order": order,
                        "error": error})
    return {"quotes": results}


def _quote(core, session, q: schema.QuoteSlot, post_only: bool):
    """Make one slot show ``q``: place, replace in place, or remove its order.

    The slot's order is replaced in place (one engine command: refused, it is left as
    it was), keeping its time priority when only the quantity falls; its ``qty``
    becomes what it filled plus what the slot should show. Only when that would pass
    the contract's maximum, or the request's post_only differs from the order's
    (a replace keeps the order's own), is the order renewed: cancelled, and a new one
    placed, after the checks that can refuse the new one without touching the old
    (post-only would take, the band); a refusal after those empties the slot.
    """
    venue, account_id = core.venue, session.account_id
    side = codec.SIDES[q.side]
    price = codec.price(q.price, "price")
    if q.qty < 0:
        raise RpcError(RejectReason.INVALID_QUANTITY, "qty is the quantity the quote should "
                       "show: 0 removes it", field="qty")
    order = venue.quote(account_id, q.symbol, int(side), q.level)
    if order is None:
        return None if q.qty == 0 else _new_quote(core, session, q, side, price, post_only)
    if q.qty == 0:
        return _removed(core, account_id, order.order_id)
    if order.price == price and order.leaves_qty == q.qty and order.post_only == post_only:
        return venue.view(order)
    market = venue.exchange.markets[q.symbol]
    total = order.filled_qty + q.qty
    if order.post_only == post_only and total <= market.instrument.max_qty:
        outcome = core.submit(ReplaceOrder(ts_ns=venue.now(), account_id=account_id,
                                           order_id=order.order_id, price=price, qty=total))
        _refused(outcome)
        return outcome.view(order.order_id)
    _would_rest(market, side, price, post_only)
    _removed(core, account_id, order.order_id)
    return _new_quote(core, session, q, side, price, post_only)


def _would_rest(market, side, price: int, post_only: bool) -> None:
    """Refuse, before the slot's order is cancelled, a new quote the engine would refuse
    for its price: outside the band, or post-only and crossing the book."""
    if not market.band_low <= price <= market.band_high:
        raise RpcError(RejectReason.PRICE_OUT_OF_BAND, f"price {codec.format_price(price)} is "
                       f"outside the band {codec.format_price(market.band_low)}.."
                       f"{codec.format_price(market.band_high)}", field="price")
    if post_only:
        book = market.book
        opposite = book.best_ask() if side is Side.BUY else book.best_bid()
        if opposite is not None and (price >= opposite if side is Side.BUY
                                     else price <= opposite):
            raise RpcError(RejectReason.POST_ONLY_WOULD_TAKE, "a post-only order may not take "
                           "liquidity", field="price")


def _new_quote(core, session, q: schema.QuoteSlot, side, price: int, post_only: bool):
    _room_for_an_order(core, session)
    outcome = core.submit(PlaceOrder(
        ts_ns=core.venue.now(), account_id=session.account_id, symbol=q.symbol, side=side,
        qty=q.qty, order_type=OrderType.LIMIT, price=price, post_only=post_only,
        client_order_id=f"{QUOTE_PREFIX}{q.level}:{core.journal.next_seq}"))
    return _placed(core, session, outcome)


def _removed(core, account_id: int, order_id: int):
    """Cancel a slot's order; one that closed meanwhile (time reached its contract's last
    trading time first, or a fill) is no error. Return its view."""
    outcome = core.submit(CancelOrder(ts_ns=core.venue.now(), account_id=account_id,
                                      order_id=order_id))
    refused = outcome.refused
    if refused is not None and refused.reason is not RejectReason.ORDER_CLOSED:
        raise codec.refusal(refused)
    return outcome.view(order_id)


def _slot_order(core, session, q: schema.QuoteSlot):
    """The view of the order holding a slot now (after a refusal), or None."""
    order = core.venue.quote(session.account_id, q.symbol, int(codec.SIDES[q.side]), q.level)
    return None if order is None else core.venue.view(order)


def cancel_quotes(core, session, p: schema.SymbolFilter):
    """Remove the account's quotes (of one symbol, if named)."""
    if p.symbol is not None:
        core.market(p.symbol)
    venue, account_id = core.venue, session.account_id
    cancelled = 0
    for (owner, symbol, side, level) in sorted(venue.quotes):
        if owner != account_id or (p.symbol is not None and symbol != p.symbol):
            continue
        order = venue.quote(owner, symbol, side, level)
        if order is not None and _removed(core, account_id, order.order_id).cancel_reason \
                == "user":
            cancelled += 1
    return {"cancelled": cancelled}


ORDERS_PER_TOKEN = 100       # an order.list answer costs a request token per 100 orders more


def list_orders(core, session, p: schema.OrderListQuery):
    """The account's open orders, oldest first, a page of ``limit`` after ``after``; a big
    answer is charged its size (5,000 orders were 1.9 MB for one token)."""
    if p.symbol is not None:
        core.market(p.symbol)
    venue = core.venue
    orders = venue.exchange.open_orders(session.account_id, p.symbol)
    if p.after is not None:
        orders = [o for o in orders if o.order_id > p.after]
    orders = orders[:p.limit]
    extra = (len(orders) - 1) // ORDERS_PER_TOKEN
    if extra > 0:
        core.charge(session, extra)
    return [venue.view(o) for o in orders]


def get_order(core, session, p: schema.OrderRef):
    _require_ref(p)
    return core.venue.view(_own_order(core, session, p.order_id, p.client_order_id))


# -- Market data --------------------------------------------------------------------

def instruments(core, session, p):
    return [codec.instrument_view(m) for m in core.venue.exchange.markets.values()]


def book(core, session, p: schema.BookQuery):
    core.market(p.symbol)
    snapshot = core.feed.symbols[p.symbol].book.snapshot(p.depth)
    return {"symbol": p.symbol, "seq": snapshot["seq"], "bids": snapshot["bids"],
            "asks": snapshot["asks"], "checksum": snapshot["checksum"]}


def trades(core, session, p: schema.TradesQuery):
    core.market(p.symbol)
    kept = list(core.feed.symbols[p.symbol].trades)
    return kept[:-p.limit - 1:-1]       # newest first


def subscribe(core, session, p: schema.Channels):
    """Each channel costs a subscription token (the request has paid for one): each sends
    a snapshot, and one request of 50 cost one token."""
    if len(p.channels) > 1:
        core.charge(session, len(p.channels) - 1, SUBSCRIBE)
    return {"channels": core.subscriptions.subscribe(session, p.channels, core.out)}


def unsubscribe(core, session, p: schema.Channels):
    return {"channels": core.subscriptions.unsubscribe(session, p.channels)}


# -- Accounts and the index ---------------------------------------------------------

def summary(core, session, p):
    return codec.summary_view(core.house, session.account)


def positions(core, session, p):
    return codec.positions_view(core.house, session.account_id)


def account_fills(core, session, p: schema.FillsQuery):
    if p.symbol is not None:
        core.market(p.symbol)
    venue = core.venue
    return venue.account_fills.page(session.account_id, p.symbol, p.limit, p.before,
                                    venue.archive)


def _index(core, gpu_class: str):
    index = core.house.index.get(gpu_class)
    if index is None:
        raise RpcError(RejectReason.UNKNOWN_GPU_CLASS, f"no GPU class {gpu_class!r} is listed",
                       field="gpu_class")
    return index


def curve(core, session, p: schema.CurveQuery):
    _index(core, p.gpu_class)
    if p.date is not None:
        return codec.settlement_curve(core.feed.history, p.gpu_class, p.date)
    return codec.curve_view(core.venue, core.feed, p.gpu_class)


def _history_of(core, symbol: str):
    """The history of a contract listed now or ever; unknown_instrument for any other."""
    history = core.feed.history
    if symbol not in core.venue.exchange.markets and not history.knows(symbol):
        raise RpcError(RejectReason.UNKNOWN_INSTRUMENT, f"no contract {symbol!r} has been "
                       "listed", field="symbol")
    return history


def settlements(core, session, p: schema.SettlementsQuery):
    """Daily settlement prices of a contract with the tier each came from (PROTOCOL 1.1)."""
    return [{"date": day.isoformat(), "price": codec.format_price(price), "tier": tier}
            for day, price, tier in _history_of(core, p.symbol).settled(p.symbol, p.first,
                                                                        p.last)]


def candles(core, session, p: schema.CandlesQuery):
    """OHLCV of a contract's trades at 1m, 1h or 1d, oldest first (PROTOCOL 1.1)."""
    return [codec.candle_view(c) for c in _history_of(core, p.symbol).window(
        p.symbol, p.interval, p.first, p.last, p.limit)]


def index_submit(core, session, p: schema.IndexSubmit):
    ts = core.venue.now()
    observed_ns = ts if p.time is None else codec.ms_to_ns(p.time)
    price = codec.price(p.price, "price")
    if p.external:      # a published index value from a trusted provider; hours do not apply
        command = SetExternalIndex(ts_ns=ts, provider_id=session.account_id,
                                   gpu_class=p.gpu_class, value=price, observed_ns=observed_ns)
    else:
        command = SubmitObservation(ts_ns=ts, provider_id=session.account_id,
                                    gpu_class=p.gpu_class, price=price, hours=p.hours,
                                    observed_ns=observed_ns)
    outcome = core.submit(command)
    _refused(outcome)
    value = outcome.of_type(IndexValue)[0]
    return {"accepted": True, "index_value": codec.opt_price(value.value)}


def market_fixing(core, session, p: schema.FixingQuery):
    index = _index(core, p.gpu_class)
    found = index.daily_fixings(p.date, p.date + datetime.timedelta(days=1))
    if not found:
        raise RpcError(RejectReason.NO_FIXING, f"{p.gpu_class} has no fixing dated "
                       f"{p.date.isoformat()}", field="date")
    return codec.fixing_view(found[0], index.params, core.account_name)


def market_index(core, session, p: schema.IndexQuery):
    view = codec.index_view(_index(core, p.gpu_class), core.venue.now())
    if p.history:
        view["history"] = [{"time": t, "value": v}
                           for t, v in core.feed.index_history.get(p.gpu_class, ())]
    return view


# -- Operations ---------------------------------------------------------------------

def _cash(core, p: schema.CashMove, command):
    account = core.accounts.by_name.get(p.account) or HOUSE_ACCOUNTS.get(p.account)
    if account is None:
        raise RpcError(RejectReason.UNKNOWN_ACCOUNT, f"no account {p.account[:64]!r}",
                       field="account")
    amount = codec.money(p.amount)
    _refused(core.submit(command(ts_ns=core.venue.now(), account_id=account.account_id,
                                 amount=amount)))
    return codec.summary_view(core.house, account)


def deposit(core, session, p: schema.CashMove):
    return _cash(core, p, Deposit)


def withdraw(core, session, p: schema.CashMove):
    return _cash(core, p, Withdraw)


def fix_index(core, session, p: schema.GpuClassFilter):
    outcome = core.submit(FixIndex(ts_ns=core.venue.now(), gpu_class=p.gpu_class))
    _refused(outcome)
    return [{"gpu_class": ev.fixing.gpu_class, "date": ev.fixing.date.isoformat(),
             "value": codec.opt_price(ev.fixing.value)} for ev in outcome.of_type(IndexFixed)]


def settle(core, session, p):
    outcome = core.submit(Settle(ts_ns=core.venue.now()))
    _refused(outcome)
    settled = outcome.of_type(Settled)[0]
    return {"settlement_prices": {s: codec.format_price(v) for s, v in settled.prices.items()}}


def _set_status(core, symbol: str, status: InstrumentStatus, reason: str | None = None):
    market = core.market(symbol)
    _refused(core.submit(SetInstrumentStatus(ts_ns=core.venue.now(), symbol=symbol,
                                             status=status, reason=reason)))
    return codec.instrument_view(market)


def halt(core, session, p: schema.Halt):
    return _set_status(core, p.symbol, InstrumentStatus.HALTED, p.reason)


def resume(core, session, p: schema.SymbolOnly):
    return _set_status(core, p.symbol, InstrumentStatus.OPEN)


def state(core, session, p: schema.NoParams):
    """The last committed journal seq and the digest of the state after it (an extension:
    an operator compares it with ``gpux journal verify`` of the same data directory)."""
    return core.state()


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
    "order.mass_quote": Method(mass_quote, schema.MassQuote, ORDER, MAKERS),
    "order.place_strip": Method(place_strip, schema.PlaceStrip, ORDER, TRADING),
    "market.strip_quote": Method(strip_quote, schema.StripQuote, REQUEST, None),
    "order.cancel_quotes": Method(cancel_quotes, schema.SymbolFilter, ORDER, MAKERS),
    "order.list": Method(list_orders, schema.OrderListQuery, REQUEST, TRADING),
    "order.get": Method(get_order, schema.OrderRef, REQUEST, TRADING),
    "market.instruments": Method(instruments, schema.NoParams, REQUEST, None),
    "market.book": Method(book, schema.BookQuery, REQUEST, None),
    "market.trades": Method(trades, schema.TradesQuery, REQUEST, None),
    "subscribe": Method(subscribe, schema.Channels, SUBSCRIBE, None),
    "unsubscribe": Method(unsubscribe, schema.Channels, SUBSCRIBE, None),
    "account.summary": Method(summary, schema.NoParams, REQUEST, TRADING),
    "account.positions": Method(positions, schema.NoParams, REQUEST, TRADING),
    "account.fills": Method(account_fills, schema.FillsQuery, REQUEST, TRADING),
    "market.curve": Method(curve, schema.CurveQuery, REQUEST, None),
    "market.settlements": Method(settlements, schema.SettlementsQuery, REQUEST, None),
    "market.candles": Method(candles, schema.CandlesQuery, REQUEST, None),
    "analytics.hedge_plan": Method(analytics.hedge_plan, schema.HedgePlan, REQUEST, None),
    "index.submit": Method(index_submit, schema.IndexSubmit, REQUEST, PROVIDERS),
    "market.index": Method(market_index, schema.IndexQuery, REQUEST, None),
    "market.fixing": Method(market_fixing, schema.FixingQuery, REQUEST, None),
    "admin.deposit": Method(deposit, schema.CashMove, REQUEST, ADMIN),
    "admin.withdraw": Method(withdraw, schema.CashMove, REQUEST, ADMIN),
    "admin.fix_index": Method(fix_index, schema.GpuClassFilter, REQUEST, ADMIN),
    "admin.settle": Method(settle, schema.NoParams, REQUEST, ADMIN),
    "admin.halt": Method(halt, schema.Halt, REQUEST, ADMIN),
    "admin.resume": Method(resume, schema.SymbolOnly, REQUEST, ADMIN),
    "admin.state": Method(state, schema.NoParams, REQUEST, ADMIN),
}
