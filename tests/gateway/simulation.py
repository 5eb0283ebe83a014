"""A deterministic simulation of the venue: its request core, projection, scheduler and
journal, driven by simulated clients on a seeded clock, crashed and recovered at random.

Clients are honest (place, cancel, replace, resend what was not answered, place strips;
the makers mass-quote), flooding, malformed and reconnecting, and half of them ask for
cancel-on-disconnect on every session; one of them has little collateral and the index
walks, so margins are called and positions liquidated. Closed orders leave memory for the
archive on disk after five minutes of the seeded clock, and snapshots are written now and
then (the archive synced first), so a restart starts from one and answers from the
archive. A client is answered only when the turn that holds its request is sealed and its
journal batch written (ack after durable); a crash drops the turn in progress, leaving
none of its batch on disk, part of it (torn, as a power loss mid-write would) or all of it
(a failed sync, or a death before the release: journaled, never answered). After each step:
no book crossed, positions summing to zero in each contract; after each answer, the order
it names is in the venue; after each restart, every answered order is still there, under
the same id, and a resend of one answers it rather than placing another; after a session
with cancel-on-disconnect ends, by a disconnect or a crash, its account has no order open;
at the end, the journal replayed alone gives the live state, and each snapshot's.

    python tests/gateway/simulation.py --seeds 1000        (make simulate SEEDS=1000)
    python tests/gateway/simulation.py --seed 1234         (one seed again)

A failure names its seed; the same seed runs the same steps again.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from clearing.messages import Liquidation, MarginCall, SubmitObservation  # noqa: E402
from gateway.core.auth import DEMO_ACCOUNTS  # noqa: E402
from gateway.core.requests import Core  # noqa: E402
from gateway.core.scheduler import Scheduler  # noqa: E402
from gateway.storage.archive import SqliteArchive, archive_path  # noqa: E402
from gateway.storage.journal import Journal, segments  # noqa: E402
from gateway.storage.recovery import (  # noqa: E402
    build, journal_dir, recover, snapshot_dir, state_digest, verify,
)
from gateway.storage.snapshots import write_snapshot  # noqa: E402
from inproc import InProcess  # noqa: E402
from live import AS_OF  # noqa: E402

CONFIG = """
[[product]]
gpu_class = "H100"
reference_price = "2.000"
months = 4
quarters = 0
years = 0

[limits.roles.anonymous]
requests = [5.0, 10]
""" + "".join(
    # The demo's accounts, but trader-2 with little collateral: it runs out of margin.
    f'\n[[account]]\naccount = "{name}"\nrole = "{role}"\napi_key = "sim-key-{name}"\n'
    f'api_secret = "sim-secret-{name}-0123456789"\naccount_id = {n}\n'
    f'collateral = "{"3000" if name == "trader-2" else collateral}"\n'
    f'trusted = {str(trusted).lower()}\n'
    for n, (name, role, collateral, trusted) in enumerate(DEMO_ACCOUNTS, start=1))
TRADERS = ("trader-1", "trader-2", "maker-1", "maker-2")


class Violation(AssertionError):
    pass


class Client:
    """One simulated participant: its session, what it sent and what it was answered."""

    def __init__(self, name: str, kind: str, guarded: bool) -> None:
        self.name, self.kind = name, kind
        self.guarded = guarded                 # asks for cancel-on-disconnect on each session
        self.session = None
        self.params: dict[str, dict] = {}      # client_order_id -> its order's params
        self.sent: set[str] = set()            # client_order_ids not answered yet
        self.answered: dict[str, int] = {}     # client_order_id -> order id, answered
        self.count = 0


class Simulation:
    def __init__(self, seed: int, workdir: Path, steps: int = 400) -> None:
        self.seed, self.steps = seed, steps
        self.rng = random.Random(seed)
        self.data_dir = workdir / f"sim-{seed}"
        self.v = InProcess(self.data_dir, CONFIG)
        # The server's archive (recover attaches it): closed orders leave memory for it.
        self.v.venue.attach_archive(SqliteArchive(archive_path(self.data_dir)))
        self.symbols = sorted(self.v.venue.exchange.markets)[1:3]
        self.strip = sorted(self.v.venue.exchange.markets)[1:4]
        rng = self.rng
        self.clients = [Client(name, rng.choice(("honest", "honest", "flooding", "malformed",
                                                 "reconnecting")), rng.random() < 0.5)
                        for name in TRADERS]
        self.inbox: list[tuple[Client, str, bytes]] = []     # replies of the open turn
        self.crashes = self.torn = self.written = self.answers = self.snapshots = 0
        self.methods: Counter = Counter()     # "method ok|refused" -> how many
        self.ids = 0
        self.index = 2000                      # ticks: what the index providers observe
        self._scheduler()

    def _scheduler(self) -> None:
        self.scheduler = Scheduler(self.v.config.schedule, self.v.venue, self.v.ns)

    # -- Clients ------------------------------------------------------------------------

    def _request(self, client: Client, method: str, params, cid: str | None = None) -> bytes:
        self.ids += 1
        frame = json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method,
                            "params": params})
        handled = self.v.core.handle(client.session, frame, self.v.now)
        self.inbox.append((client, cid, handled.reply))
        ok = b'"result"' in handled.reply if handled.reply else None
        if handled.reply and b'"internal_error"' in handled.reply:
            raise Violation(f"{method} {params} met an internal error: {handled.reply!r}")
        self.methods[f"{method} {'ok' if ok else 'refused'}"] += 1
        return handled.reply

    def _place(self, client: Client, cid: str | None = None) -> None:
        rng = self.rng
        if cid is None:
            client.count += 1
            cid = f"{client.name}-{client.count}"
            client.params[cid] = dict(symbol=rng.choice(self.symbols),
                                      side=rng.choice(("buy", "sell")), qty=rng.randint(1, 8),
                                      price=self._price(),
                                      client_order_id=cid)
            client.sent.add(cid)
        self._request(client, "order.place", client.params[cid], cid)

    def _connect(self, client: Client) -> bool:
        """A new session; a guarded client's asks for cancel-on-disconnect first and, if
        refused (rate limited), ends and tries again later: it never trades unguarded."""
        client.session = self.v.session(client.name)
        if client.guarded:
            reply = self._request(client, "session.cancel_on_disconnect", {"enabled": True})
            if b'"result"' not in reply:
                self.v.core.disconnected(client.session)
                client.session = None
                return False
        return True

    def act(self, client: Client) -> None:
        if client.session is None and not self._connect(client):
            return
        self._act(client)

    def _act(self, client: Client) -> None:
        rng = self.rng
        roll = rng.random()
        if client.kind == "malformed" and roll < 0.3:
            frame = rng.choice([b"{", b'{"jsonrpc":"2.0","id":1,"method":"order.place",'
                                b'"params":{"symbol":"H100-2027-01","qty":-1}}',
                                b'{"jsonrpc":"2.0","id":1,"method":"order.place","method":'
                                b'"admin.state","params":{}}', bytes(rng.randrange(256)
                                                                   for _ in range(20))])
            self.v.core.handle(client.session, frame, self.v.now)
            return
        if client.kind == "flooding" and roll < 0.3:
            for _ in range(60):
                self._request(client, "market.book", {"symbol": self.symbols[0]})
            if client.session.closing:           # closed for flooding: it reconnects
                self.v.core.disconnected(client.session)
                client.session = None
            return
        if client.kind == "reconnecting" and roll < 0.1 and client.session is not None:
            self.v.core.disconnected(client.session)
            client.session = None
            self._check_guarded(client)
            return
        if client.params and roll < 0.2:       # a resend: of one not answered, or one that was
            self._place(client, rng.choice(sorted(client.sent) if client.sent and roll < 0.15
                                           else sorted(client.params)))
        elif client.answered and roll < 0.35:
            cid = rng.choice(sorted(client.answered))
            self._request(client, "order.cancel", {"client_order_id": cid})
        elif client.answered and roll < 0.45:
            cid = rng.choice(sorted(client.answered))
            self._request(client, "order.replace", {"client_order_id": cid,
                                                    "qty": rng.randint(1, 8),
                                                    "price": self._price()})
        elif client.name.startswith("maker") and roll < 0.55:
            self._request(client, "order.mass_quote", {"quotes": [
                {"symbol": rng.choice(self.symbols), "side": side, "level": rng.randint(0, 2),
                 "qty": rng.choice((0, 1, 3, 5)), "price": self._price()}
                for side in ("buy", "sell") for _ in range(rng.randint(1, 3))]})
        elif roll < 0.6:
            self._request(client, "order.place_strip", {
                "symbols": self.strip, "side": rng.choice(("buy", "sell")),
                "qty": rng.randint(1, 3), "price": self._price(),
                "tif": rng.choice(("fok", "ioc")),
                "client_order_id": f"{client.name}-s{self.ids}"})
        else:
            self._place(client)

    def _price(self) -> str:
        return f"{self.rng.randint(1880, 2120) / 1000:.3f}"

    # -- Turns, time, crashes --------------------------------------------------------------

    def seal(self) -> None:
        """The turn ends: its batch is written, then its replies are released."""
        self.v.seal()
        inbox, self.inbox = self.inbox, []
        for client, cid, reply in inbox:
            if cid is None or not reply:      # no reply: its session was closed for flooding
                continue
            answer = json.loads(reply)
            if "result" not in answer:
                continue
            order_id = answer["result"]["order_id"]
            if cid in client.answered and client.answered[cid] != order_id:
                raise Violation(f"{cid} answered as order {order_id}, earlier as "
                                f"{client.answered[cid]}")
            client.answered[cid] = order_id
            client.sent.discard(cid)
            self.answers += 1
            self._check_answered(client, cid)

    def tick(self) -> None:
        rng, v = self.rng, self.v
        v.tick(rng.choice((0.01, 0.2, 1.0, 30.0, 30.0, 300.0)))
        if rng.random() < 0.5:            # the index walks: marks follow, margins are called
            self.index = max(1500, self.index + rng.choice((-60, -30, 30, 60)))
            for n in (1, 2, 3):
                v.core.submit(SubmitObservation(
                    ts_ns=v.ns, provider_id=v.accounts.by_name[f"index-{n}"].account_id,
                    gpu_class="H100", price=self.index + n, hours=1000, observed_ns=v.ns))
        for cmd in self.scheduler.commands(self.v.ns):
            for ev in self.v.core.submit(cmd).events:
                if type(ev) in (MarginCall, Liquidation):
                    self.methods[type(ev).__name__] += 1

    def snapshot(self) -> None:
        """A snapshot after the turn, as the server writes one: the archive first (the
        snapshot holds only the recent closed orders), then the state."""
        v = self.v
        v.venue.archive.sync()
        write_snapshot(snapshot_dir(self.data_dir), v.journal.committed_seq, (v.venue, v.feed),
                       state_digest(v.venue, v.feed))
        self.snapshots += 1

    def crash(self) -> None:
        """Stop mid-turn, no reply of the turn released: its batch never reached the disk,
        or part of it did (a write cut short), or all of it did (its sync failed, or the
        process died before the release); then a restart on the directory."""
        self.crashes += 1
        batch = self.v.journal.cut()
        roll = self.rng.random()
        if batch is not None and roll < 0.7:
            whole = roll < 0.2
            data = batch[0] if whole else batch[0][:self.rng.randrange(1, len(batch[0]))]
            with open(segments(journal_dir(self.data_dir))[-1][1], "ab") as f:
                f.write(data)
            self.written += whole
            self.torn += not whole
        self.v.journal.close(commit=False)
        # The process dies: its archive connection (and the read transaction it holds)
        # goes with it, and what waited in memory to be written is lost.
        self.v.venue.archive._db.close()
        self.inbox = []
        v = self.v
        recovered = recover(self.data_dir, lambda: build(v.config, AS_OF,
                                                         v.accounts.by_id.values()))
        venue, feed = recovered.venue, recovered.feed
        venue.clock = lambda: v.ns
        journal = Journal(journal_dir(self.data_dir), recovered.seq + 1, fsync=False)
        v.venue, v.feed, v.journal = venue, feed, journal
        v.core = Core(venue, feed, v.accounts, v.config.limits, journal,
                      digest=lambda: state_digest(venue, feed), wall_clock=lambda: v.ns)
        v.core.end_cut_off_sessions()
        v.seal()
        self._scheduler()
        for client in self.clients:
            client.session = None
            for cid in client.answered:
                self._check_answered(client, cid)
            self._check_guarded(client)

    # -- Checks ---------------------------------------------------------------------------

    def _check_answered(self, client: Client, cid: str) -> None:
        account = self.v.accounts.by_name[client.name].account_id
        order = self.v.venue.find(account, None, cid)       # in memory or archived
        if order is None or order.order_id != client.answered[cid]:
            raise Violation(f"{client.name} was answered order {client.answered[cid]} for "
                            f"{cid}; the venue has {order and order.order_id}")

    def _check_guarded(self, client: Client) -> None:
        """A client with cancel-on-disconnect whose session ended (or a crash cut off) has
        no order left open."""
        if not client.guarded:
            return
        account = self.v.accounts.by_name[client.name].account_id
        left = self.v.venue.exchange.open_order_count(account)
        if left:
            raise Violation(f"{client.name} had cancel-on-disconnect; its session ended with "
                            f"{left} of its orders open")

    def check(self) -> None:
        for symbol, market in self.v.venue.exchange.markets.items():
            bid, ask = market.book.best_bid(), market.book.best_ask()
            if bid is not None and ask is not None and bid >= ask:
                raise Violation(f"{symbol} is crossed at rest: {bid} >= {ask}")
        totals: dict[str, int] = {}
        for account in self.v.venue.house.ledger.accounts.values():
            for symbol, position in account.positions.items():
                totals[symbol] = totals.get(symbol, 0) + position.qty
        if any(totals.values()):
            raise Violation(f"positions do not sum to zero: {totals}")

    def run(self) -> dict:
        rng = self.rng
        for _ in range(self.steps):
            roll = rng.random()
            if roll < 0.02:
                self.crash()
            elif roll < 0.03:
                self.seal()
                self.snapshot()
            elif roll < 0.25:
                self.seal()
            elif roll < 0.35:
                self.tick()
            else:
                self.act(rng.choice(self.clients))
            self.check()
        self.seal()
        for client in self.clients:            # what was never answered is sent once more
            if client.session is None and not self._connect(client):
                continue
            for cid in sorted(client.sent):
                self._place(client, cid)
        self.seal()
        self.v.journal.close()
        archive = self.v.venue.archive
        archive.flush()
        archived = archive._db.execute("SELECT count(*) FROM orders").fetchone()[0]
        v = self.v
        replayed = verify(self.data_dir, lambda: build(v.config, AS_OF,
                                                       v.accounts.by_id.values()))
        v.core.projection.flush()
        if replayed.digest != state_digest(v.venue, v.feed):
            raise Violation("the journal replayed alone differs from the live state")
        if not all(replayed.snapshots.values()):
            raise Violation(f"snapshots whose state the replay did not reach: "
                            f"{[s for s, ok in replayed.snapshots.items() if not ok]}")
        return {"answers": self.answers, "crashes": self.crashes, "torn": self.torn,
                "snapshots": self.snapshots, "archived": archived, "methods": self.methods,
                "unanswered_on_disk": self.written, "commands": replayed.last_seq}


def run_seed(seed: int, workdir: Path, steps: int = 400) -> dict:
    """One seed's run; any failure (a violation, or recovery refusing the journal) is a
    Violation naming the seed."""
    try:
        return Simulation(seed, workdir, steps).run()
    except Exception as exc:
        raise Violation(f"seed {seed}: {exc!r} (again: python tests/gateway/simulation.py "
                        f"--seed {seed})") from exc


def main(argv=None) -> int:
    import logging
    import tempfile
    logging.getLogger("gpux.recovery").setLevel(logging.ERROR)    # torn tails are expected
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="run seeds 1..N")
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(1, args.seeds + 1)
    started, totals = time.perf_counter(), {}
    with tempfile.TemporaryDirectory() as workdir:
        for seed in seeds:
            for key, value in run_seed(seed, Path(workdir), args.steps).items():
                totals[key] = totals.get(key, Counter() if type(value) is Counter else 0) + value
    seconds = time.perf_counter() - started
    print(f"{len(seeds)} seeds, 0 violations, {seconds:.1f} s ({len(seeds) / seconds:.1f} "
          f"seeds/s): {totals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
