"""Closed orders and fills leave memory after a few minutes, and are answered as before.

The engine keeps a closed order in memory for RECENT_NS, the account's fills about as
long; then they are in the archive (gateway.core.archive). Whatever a client asks about
them (order.get, a resend by client_order_id, a cancel or a replace, account.fills) is
answered exactly as it was while they were in memory, for seven days.
"""
from __future__ import annotations

from engine.exchange import RECENT_NS, RETENTION_NS
from engine.messages import Timer
from gateway.core import venue as venue_module
from gateway.core.archive import MemoryArchive
from gateway.storage.recovery import build, verify
from inproc import InProcess
from live import AS_OF, SYMBOL

NS = 10**9


def _later(venue: InProcess, ns: int) -> None:
    """Move the clock on and let the engine see the time (a Timer)."""
    venue.tick(ns / NS)
    venue.core.submit(Timer(ts_ns=venue.ns))


def _trade(venue: InProcess):
    """A cancelled order and a filled one of maker-1 (both with client_order_ids), an
    open one, and what the clients see of them."""
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    buy = dict(symbol=SYMBOL, side="buy", qty=3, price="1.990")
    cancelled = venue.result(maker, "order.place", client_order_id="gone", **buy)
    venue.result(maker, "order.cancel", order_id=cancelled["order_id"])
    sell = dict(symbol=SYMBOL, side="sell", qty=2, price="2.010")
    filled = venue.result(maker, "order.place", client_order_id="done", **sell)
    venue.result(taker, "order.place", symbol=SYMBOL, side="buy", qty=2, price="2.010")
    rests = venue.result(maker, "order.place", client_order_id="rests", symbol=SYMBOL,
                         side="buy", qty=1, price="1.900")
    seen = {o["client_order_id"]: venue.result(maker, "order.get", order_id=o["order_id"])
            for o in (cancelled, filled, rests)}
    fills = venue.result(maker, "account.fills")
    return maker, taker, buy, sell, seen, fills


def _forgotten(venue: InProcess, order_id: int) -> bool:
    v = venue.venue
    return (v.exchange.order(order_id) is None and order_id not in v.fills
            and order_id not in v.ended)


def test_a_closed_order_leaves_memory_and_is_answered_as_before(tmp_path):
    venue = InProcess(tmp_path / "data")
    maker, taker, buy, sell, seen, fills = _trade(venue)
    gone, done = seen["gone"]["order_id"], seen["done"]["order_id"]
    _later(venue, RECENT_NS - NS)
    assert not _forgotten(venue, gone)
    _later(venue, 2 * NS)
    assert _forgotten(venue, gone) and _forgotten(venue, done)
    assert venue.venue.exchange.order(seen["rests"]["order_id"]) is not None   # open: kept
    for cid, view in seen.items():
        assert venue.result(maker, "order.get", order_id=view["order_id"]) == view
        assert venue.result(maker, "order.get", client_order_id=cid) == view
    # A resend is answered with the order, and places nothing.
    before = venue.venue.exchange.open_order_count(venue.accounts.by_name["maker-1"].account_id)
    again = venue.result(maker, "order.place", client_order_id="gone", **buy)
    assert again == seen["gone"] | {"duplicate": True}
    again = venue.result(maker, "order.place", client_order_id="done", **sell)
    assert again == seen["done"] | {"duplicate": True}
    error = venue.error(maker, "order.place", client_order_id="done", **sell | {"qty": 5})
    assert error["data"]["reason"] == "duplicate_client_order_id", error
    after = venue.venue.exchange.open_order_count(venue.accounts.by_name["maker-1"].account_id)
    assert after == before
    # A cancel or a replace of it is refused as closed, as before, not as unknown.
    for ref in ({"order_id": gone}, {"client_order_id": "gone"}):
        assert venue.error(maker, "order.cancel", **ref)["data"]["reason"] == "order_closed"
        assert venue.error(maker, "order.replace", qty=9, **ref)["data"]["reason"] \
            == "order_closed"
    # Another account's order is unknown, archived or not.
    assert venue.error(taker, "order.get", order_id=gone)["data"]["reason"] == "unknown_order"
    assert venue.error(taker, "order.cancel", order_id=gone)["data"]["reason"] \
        == "unknown_order"
    venue.seal()
    assert venue.result(maker, "account.fills") == fills


def test_an_archived_order_is_kept_seven_days_then_its_client_order_id_is_free(tmp_path):
    venue = InProcess(tmp_path / "data")
    maker, _, buy, _, seen, _ = _trade(venue)
    _later(venue, RETENTION_NS - 60 * NS)
    assert venue.result(maker, "order.place", client_order_id="gone", **buy)["duplicate"]
    _later(venue, 61 * NS)
    assert venue.error(maker, "order.get", client_order_id="gone")["data"]["reason"] \
        == "unknown_order"
    new = venue.result(maker, "order.place", client_order_id="gone", **buy)
    assert new["order_id"] > seen["rests"]["order_id"] and "duplicate" not in new


def test_fills_move_to_the_archive_and_pages_run_on_into_it(tmp_path):
    """account.fills pages the same whether the fills are in memory or archived, and the
    memory holds only the recent ones."""
    venue = InProcess(tmp_path / "data")
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    for n in range(12):
        symbol = SYMBOL if n % 3 else "H100-2027-04"
        venue.result(maker, "order.place", symbol=symbol, side="sell", qty=1,
                     price="2.010")
        venue.result(taker, "order.place", symbol=symbol, side="buy", qty=1, price="2.010")
        if n == 5:
            _later(venue, RECENT_NS + NS)
    pages = _pages(venue, maker)
    assert len(pages[(None, None)]) == 12
    venue.venue._prune()
    held = venue.venue.account_fills._trade_ids[venue.accounts.by_name["maker-1"].account_id]
    assert len(held) == 6                     # the six older ones are in the archive
    assert _pages(venue, maker) == pages


def _pages(venue, session) -> dict:
    """Every page of every size, filtered and not."""
    out = {}
    every = venue.result(session, "account.fills", limit=100)
    ids = [f["trade_id"] for f in every] + [None]
    for symbol in (None, SYMBOL, "H100-2027-04", "H100-2027-05"):
        for before in ids:
            for limit in (1, 2, 5, 100):
                params = {"limit": limit} | ({"symbol": symbol} if symbol else {}) | (
                    {"before": before} if before else {})
                venue.now += 1.0          # only the request bucket's clock: it refills
                out[(symbol, before) if limit == 100 else (symbol, before, limit)] = \
                    venue.result(session, "account.fills", **params)
    out[(None, None)] = every
    return out


def test_the_journal_replays_to_the_same_state_and_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(venue_module, "PRUNE_EVERY", 7)      # live and in the replay
    venue = InProcess(tmp_path / "data")
    maker, _, buy, _, seen, _ = _trade(venue)
    _later(venue, RECENT_NS + NS)
    venue.result(maker, "order.place", client_order_id="gone", **buy)
    for _ in range(10):
        _later(venue, NS)
    assert venue.venue.archive._fills             # the old fills were moved
    venue.seal()
    venue.journal.close()
    replayed = verify(tmp_path / "data", lambda: build(venue.config, AS_OF,
                                                      venue.accounts.by_id.values()))
    assert replayed.digest == venue.digest()
    archive = replayed.replay.venue.archive
    assert isinstance(archive, MemoryArchive)
    assert archive.orders == venue.venue.archive.orders
    closed = {seen["gone"]["order_id"], seen["done"]["order_id"]}
    assert closed < set(archive.orders) and seen["rests"]["order_id"] not in archive.orders


def test_old_fills_move_by_themselves_every_so_many_commands(tmp_path):
    """The venue counts commands, and every PRUNE_EVERY moves old fills to the archive."""
    venue = InProcess(tmp_path / "data")
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    venue.result(maker, "order.place", symbol=SYMBOL, side="sell", qty=1, price="2.010")
    venue.result(taker, "order.place", symbol=SYMBOL, side="buy", qty=1, price="2.010")
    account = venue.accounts.by_name["maker-1"].account_id
    venue.tick(RECENT_NS / NS + 1)
    assert account in venue.venue.account_fills._trade_ids
    venue.venue._until_prune = 1          # as after PRUNE_EVERY - 1 commands
    venue.core.submit(Timer(ts_ns=venue.ns))
    venue.core.projection.flush()
    assert account not in venue.venue.account_fills._trade_ids
    assert venue.venue.archive.fills(account, None, None, 10)
