"""Promises made to a session that a crash must not break: cancel-on-disconnect and the
login nonces.

A session that asked for cancel-on-disconnect is journaled with the orders it answers
for; a restart ends the sessions the crash cut off as its first commands, cancelling
their orders (reason ``disconnect``). A login's nonce is journaled too, so a login
captured before a crash cannot be replayed after it within its window.
"""
from __future__ import annotations

import signal
import time

from clearing.house import ClearingHouse
from engine.messages import CancelOrder, CancelReason, OrderCancelled, SetInstrumentStatus
from gateway.core.auth import sign
from gateway.core.promises import GuardOrders, SessionClosed, Unguard
from gateway.storage.journal import Reader
from gateway.storage.recovery import canonical_state, journal_dir
from inproc import InProcess
from live import SYMBOL, Keys, Process, Ws, run, stop_and_verify, stop_and_check_replay

LADDER = [dict(symbol=SYMBOL, side="buy", level=0, qty=5, price="2.000"),
          dict(symbol=SYMBOL, side="sell", level=0, qty=5, price="2.300")]


def _ids(placed) -> set[int]:
    return {p["order_id"] for p in placed}


async def _open_orders(live, name: str) -> set[int]:
    ws = await Ws.open(live, name)
    orders = await ws.result("order.list")
    await ws.close()
    return {o["order_id"] for o in orders}


def test_a_crash_does_not_keep_a_guarded_sessions_orders(make_server):
    """The orders a cancel-on-disconnect session answers for (placed before it asked,
    placed after, quote slots, a resend it took over) are cancelled by the restart, with
    reason disconnect; another session's orders of the same account rest on."""
    live = make_server()

    async def before():
        other = await Ws.open(live, "maker-1")
        kept = await other.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                  price="1.950")
        resent = await other.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                    price="1.960", client_order_id="resent")
        ws = await Ws.open(live, "maker-1")
        early = await ws.result("order.place", symbol=SYMBOL, side="sell", qty=1,
                                price="2.250")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        late = await ws.result("order.place", symbol=SYMBOL, side="sell", qty=1,
                               price="2.260")
        again = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                price="1.960", client_order_id="resent")
        assert again["duplicate"] is True
        quotes = [r["order"] for r in (await ws.result("order.mass_quote",
                                                       quotes=LADDER))["quotes"]]
        return kept, _ids([resent, early, late] + quotes)
    kept, guarded = run(before())
    live.crash()
    again = live.restart()
    assert run(_open_orders(again, "maker-1")) == {kept["order_id"]}

    async def after():
        ws = await Ws.open(again, "maker-1")
        for order_id in guarded:
            order = await ws.result("order.get", order_id=order_id)
            assert (order["status"], order["cancel_reason"]) == ("cancelled", "disconnect")
        await ws.close()
    run(after())
    stop_and_check_replay(again)


def test_the_restart_ends_the_cut_off_sessions_first(make_server):
    """The restart's first records are the ends of the sessions the crash cut off, one per
    session, before any request is taken; the next restart has none left to end."""
    live = make_server()

    async def before():
        for name in ("maker-1", "trader-1"):
            ws = await Ws.open(live, name)
            await ws.result("session.cancel_on_disconnect", enabled=True)
            await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="1.950")
    run(before())
    live.crash()
    again = live.restart()
    first = again.server.recovered.seq
    records = [r.cmd for r in Reader(journal_dir(again.data_dir), after=first)]
    assert [type(c) for c in records] == [CancelOrder, SessionClosed] * 2
    assert {c.reason for c in records[::2]} == {CancelReason.DISCONNECT}
    assert run(_open_orders(again, "maker-1")) == set()
    assert run(_open_orders(again, "trader-1")) == set()
    again.crash()
    third = again.restart()
    assert list(Reader(journal_dir(third.data_dir), after=third.server.recovered.seq)) == []
    stop_and_check_replay(third)


def test_cancel_on_disconnect_turned_off_leaves_the_orders_after_a_crash(make_server):
    live = make_server()

    async def before():
        ws = await Ws.open(live, "trader-1")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        placed = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                 price="1.950")
        await ws.result("session.cancel_on_disconnect", enabled=False)
        later = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                price="1.940")
        return _ids([placed, later])
    placed = run(before())
    live.crash()
    again = live.restart()
    assert run(_open_orders(again, "trader-1")) == placed
    stop_and_check_replay(again)


def test_a_session_journals_its_guard_once_per_request(make_server):
    """Only guarded sessions cost a record: one per request that gave them orders to
    answer for, naming all of them (a mass quote's four in one)."""
    live = make_server()

    async def scenario():
        plain = await Ws.open(live, "trader-2")
        await plain.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="1.900")
        ws = await Ws.open(live, "maker-1")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        await ws.result("session.cancel_on_disconnect", enabled=True)
        quoted = await ws.result("order.mass_quote", quotes=LADDER + [
            dict(LADDER[0], level=1, price="1.990"), dict(LADDER[1], level=1, price="2.310")])
        assert all(q["error"] is None for q in quoted["quotes"]), quoted
        await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="1.910")
    run(scenario())
    stop_and_check_replay(live)
    guards = [r.cmd for r in Reader(journal_dir(live.data_dir))
              if type(r.cmd) is GuardOrders]
    assert [len(g.orders) for g in guards] == [4, 1]
    assert len({g.session for g in guards}) == 1


def test_sigkill_cancels_the_quotes_of_a_guarded_session_and_a_login_cannot_be_replayed(
        tmp_path):
    """A real `gpux serve` killed with SIGKILL: after the restart the market maker's
    quotes are gone (cancel_reason disconnect), the trader's unguarded order rests, and
    the maker's captured login, sent again within its window, is refused nonce_reused."""
    data = tmp_path / "data"
    server = Process(data)
    keys = Keys(server.url, data / "demo-accounts.json")
    maker = keys.account("maker-1")
    ts, nonce = int(time.time() * 1000), "captured-1"
    login = {"jsonrpc": "2.0", "id": 1, "method": "auth.login",
             "params": {"api_key": maker.api_key, "timestamp": ts, "nonce": nonce,
                        "signature": sign(maker.api_secret, ts, nonce)}}

    async def before():
        ws = await Ws.open(keys)
        await ws.send(login)
        assert "result" in await ws.response(1)
        inst = next(i for i in await ws.result("market.instruments")
                    if i["gpu_class"] == "H100")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        quote = await ws.result("order.place", symbol=inst["symbol"], side="buy", qty=2,
                                price=inst["reference_price"])
        trader = await Ws.open(keys, "trader-1")
        rests = await trader.result("order.place", symbol=inst["symbol"], side="buy", qty=1,
                                    price=inst["reference_price"])
        return quote["order_id"], rests["order_id"]
    quote, rests = run(before())
    server.stop(signal.SIGKILL)

    again = Process(data)
    keys = Keys(again.url, data / "demo-accounts.json")

    async def after():
        replayed = await Ws.open(keys)
        await replayed.send(login)
        refused = await replayed.response(1)
        assert refused["error"]["data"]["reason"] == "nonce_reused", refused
        ws = await Ws.open(keys, "maker-1")
        order = await ws.result("order.get", order_id=quote)
        assert (order["status"], order["cancel_reason"]) == ("cancelled", "disconnect")
        trader = await Ws.open(keys, "trader-1")
        assert [o["order_id"] for o in await trader.result("order.list")] == [rests]
    run(after())
    stop_and_verify(again, data)


def test_turning_cancel_on_disconnect_off_and_on_journals_no_order_twice(make_server):
    """Found by the fuzzer: each enable journaled every order the session had placed, so a
    client toggling it wrote its whole order list per request. The guard now keeps its
    orders while off; on again, it is told only of orders placed meanwhile."""
    live = make_server()

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        placed = [await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                  price=f"1.9{i}0") for i in range(3)]
        for enabled in (True, False, True, False):
            await ws.result("session.cancel_on_disconnect", enabled=enabled)
        placed.append(await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                      price="1.990"))
        await ws.result("session.cancel_on_disconnect", enabled=True)
        return _ids(placed)
    placed = run(scenario())
    guards = [r.cmd for r in Reader(journal_dir(live.data_dir))
              if type(r.cmd) in (GuardOrders, Unguard)]
    assert [(type(g).__name__, len(getattr(g, "orders", ()))) for g in guards] == [
        ("GuardOrders", 3), ("Unguard", 0), ("GuardOrders", 0), ("Unguard", 0),
        ("GuardOrders", 1)]
    live.crash()
    again = live.restart()
    assert run(_open_orders(again, "trader-1")) == set()

    async def check():
        ws = await Ws.open(again, "trader-1")
        for order_id in placed:
            order = await ws.result("order.get", order_id=order_id)
            assert order["cancel_reason"] == "disconnect"
    run(check())
    stop_and_check_replay(again)


# Found by a review: the cancels ran inside one SessionClosed, which names no instrument,
# so a cancel that raised halted nothing, and at a restart it stopped the start.

def _explode_on_disconnect_cancels(monkeypatch):
    """A bug in the ledger that raises when a disconnect's cancel reaches it."""
    apply = ClearingHouse.apply

    def exploding(self, events):
        if any(type(e) is OrderCancelled and e.reason == CancelReason.DISCONNECT
               for e in events):
            raise RuntimeError("a bug in the ledger")
        return apply(self, events)
    monkeypatch.setattr(ClearingHouse, "apply", exploding)


def test_a_disconnect_cancel_that_raises_halts_its_instrument(tmp_path, monkeypatch):
    venue = InProcess(tmp_path / "data")
    session = venue.session("trader-1")
    venue.result(session, "session.cancel_on_disconnect", enabled=True)
    venue.result(session, "order.place", symbol=SYMBOL, side="buy", qty=1, price="1.950")
    _explode_on_disconnect_cancels(monkeypatch)
    venue.core.disconnected(session)            # logged; the session ends all the same
    assert venue.venue.exchange.markets[SYMBOL].status.name == "HALTED"
    assert venue.venue.promises.guards == {}


def test_a_restart_starts_though_a_cut_off_sessions_cancel_raises(make_server, monkeypatch):
    live = make_server()

    async def before():
        ws = await Ws.open(live, "trader-1")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="1.950")
    run(before())
    live.crash()
    _explode_on_disconnect_cancels(monkeypatch)
    again = live.restart()
    assert again.call(lambda: again.server.venue.exchange.markets[SYMBOL].status.name) == \
        "HALTED"
    again.crash()


def test_a_state_without_promises_digests_as_before_there_were_any(tmp_path):
    """Found by a review: snapshots written before promises existed recorded a digest
    without them; an empty set of promises leaves the digest as it was, so they verify."""
    venue = InProcess(tmp_path / "data")
    assert len(canonical_state(venue.venue, venue.feed)) == 6
    venue.session("trader-1")                   # its nonce is a promise for 30 s
    assert len(canonical_state(venue.venue, venue.feed)) == 7


def test_a_halt_that_raises_after_a_command_that_raised_is_marked_too(tmp_path, monkeypatch):
    """Found by a review: when halting the instrument of a command that raised raised
    too, no Failed marker followed the halt, so the journal could not be replayed."""
    venue = InProcess(tmp_path / "data")
    session = venue.session("trader-1")
    process = venue.venue.process

    def exploding(cmd):
        if type(cmd) is SetInstrumentStatus or getattr(cmd, "qty", None) == 77:
            venue.venue.record(cmd)
            raise RuntimeError("a bug")
        return process(cmd)
    monkeypatch.setattr(venue.venue, "process", exploding)
    error = venue.error(session, "order.place", symbol=SYMBOL, side="buy", qty=77,
                        price="1.950")
    assert error["data"]["reason"] == "internal_error"
    venue.seal()
    kinds = [(type(r.cmd).__name__, getattr(r.cmd, "seq", None))
             for r in Reader(journal_dir(tmp_path / "data"))][-4:]
    place_seq = venue.journal.next_seq - 4
    assert kinds == [("PlaceOrder", None), ("Failed", place_seq),
                     ("SetInstrumentStatus", None), ("Failed", place_seq + 2)]


def test_logins_of_one_account_are_rate_limited_as_each_is_journaled(tmp_path):
    """Each login writes its nonce to the journal, so a key holder reconnecting in a loop
    would grow it without bound: an account's logins draw on a bucket of their own
    (account_logins; 1 a second, 20 at once), and a refused one journals nothing."""
    venue = InProcess(tmp_path / "data")
    for _ in range(20):
        venue.session("trader-1")
    seq = venue.journal.next_seq
    a = venue.accounts.by_name["trader-1"]
    ts = venue.ns // 10**6
    error = venue.error(venue.session(), "auth.login", api_key=a.api_key, timestamp=ts,
                        nonce="one-more", signature=sign(a.api_secret, ts, "one-more"))
    assert error["data"]["reason"] == "rate_limited" and error["data"]["retry_after_ms"] > 0
    assert venue.journal.next_seq == seq
    venue.session("trader-2")                        # another account's logins are its own
    venue.tick(1.0)
    venue.session("trader-1")
