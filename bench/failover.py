"""Kill the leading matcher at random moments: the standby must lead within seconds and lose
nothing acknowledged.

A JetStream cluster of three nats-server processes on 127.0.0.1, a leading
`gpux matcher` and a standby, each with its own data directory. Each cycle:
traders (bench.crash's: real websocket clients placing, replacing, cancelling
and crossing) trade through the leader; the leader is SIGKILLed at a random
moment; the standby takes the lease once it lapses, fences the stream and
listens. Measured: the time from the kill to the new leader listening, and to
its first acknowledged order (a probe client retrying from the kill on). Then,
as bench.crash checks a restart:

- every order a trader was told of is on the new leader as told, with its fills,
  none applied twice; the order in flight at the kill, sent again by its
  client_order_id, is placed once;
- the new leader's ``admin.state`` equals a fresh replay of its journal (which
  is the stream's content), and that replay passes through the state the old
  leader reported before the kill; positions, collateral and P&L conserve;
- the killed matcher starts again as the standby on its own directory (moving
  it aside if it holds batches the stream never took).

Usage: python -m bench.failover --kills 20 [--seed 1] [--traders 3] [--gateways 2]
(with gateways, clients trade through them and the first ack is a gateway's).
tests/gateway/test_cluster.py runs a few cycles.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from bench.crash import (
    ADMIN, SERVE_ARGS, SYMBOL, Client, Lost, Tally, Trader, check_replay, check_trader,
    crash_config, sample_state,
)
from bench.harness import ServerProcess, percentile
from gateway.cluster.natsd import NatsCluster
from gateway.config import load_config
from gateway.core.auth import Accounts

PROBE = "crash-probe"
TAKEOVER_TIMEOUT_S = 30.0


class Failovers(msgspec.Struct):
    checks: Tally
    listening_s: list[float] = []     # from each kill to the new leader listening
    first_ack_s: list[float] = []     # from each kill to its first acknowledged order
    moved_aside: int = 0              # restarted matchers whose journal the stream lacked


def matcher(workdir: Path, name: str, config_text: str, nats: NatsCluster,
            standby: bool) -> ServerProcess:
    """A `gpux matcher` in ``workdir`` (its data directory is workdir/matcher)."""
    args = SERVE_ARGS + ["--nats", ",".join(nats.urls), "--name", name] + (
        ["--standby"] if standby else [])
    return ServerProcess("matcher", config_text=config_text, workdir=workdir, args=args,
                         startup_timeout=None if standby else TAKEOVER_TIMEOUT_S)


async def first_ack(url: str, n: int, deadline: float) -> None:
    """Place (and cancel) one order on ``url``, retrying until it is acknowledged."""
    while True:
        try:
            probe = await Client.open(url, PROBE)
            order = await probe.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                       price="2.000", client_order_id=f"probe-{n}")
            await probe.result("order.cancel", order_id=order["order_id"])
            await probe.close()
            return
        except (ConnectionError, OSError, RuntimeError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.005)


def gateway(workdir: Path, name: str, config_text: str, nats: NatsCluster) -> ServerProcess:
    """A `gpux gateway` in ``workdir`` (its data directory is workdir/gateway)."""
    return ServerProcess("gateway", config_text=config_text, workdir=workdir,
                         args=SERVE_ARGS + ["--nats", ",".join(nats.urls), "--name", name],
                         startup_timeout=TAKEOVER_TIMEOUT_S)


async def run_failovers(kills: int, seed: int, n_traders: int, workdir: Path, log=print,
                        window: tuple[float, float] = (0.3, 2.0),
                        nats: NatsCluster | None = None, gateways: int = 0) -> Failovers:
    """Run ``kills`` kill/takeover cycles after ``window`` seconds of trading each (on
    ``nats``, else on a cluster of its own); clients connect to the leader, or through
    ``gateways`` gateways (each trader to one of them, in turn)."""
    rng = random.Random(seed)
    names = [f"crash-{i:03d}" for i in range(1, n_traders + 1)]
    config_text = crash_config(names + [PROBE], "fsync")
    config = load_config(config_text)
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    traders = [Trader(n, random.Random(rng.random())) for n in names]
    result = Failovers(Tally())
    tally = result.checks
    own = nats is None
    if own:
        nats = NatsCluster(workdir / "nats").start()
    leader = standby = None
    edges: list[ServerProcess] = []
    before_kill = None
    try:
        leader = matcher(workdir / "a", "a", config_text, nats, standby=False)
        standby = matcher(workdir / "b", "b", config_text, nats, standby=True)
        for i in range(gateways):
            edges.append(gateway(workdir / f"g{i + 1}", f"g{i + 1}", config_text, nats))
        for cycle in range(1, kills + 2):
            url = edges[0].url if edges else leader.url
            for i, t in enumerate(traders):
                await t.connect(edges[i % len(edges)].url if edges else url)
            if cycle > 1:
                for t in traders:
                    await check_trader(t, tally, every=cycle == kills + 1)
                admin = await Client.open(url, ADMIN)
                state = await admin.result("admin.state")
                await admin.close()
                check_replay(leader.dir / "matcher", config, accounts, state["seq"],
                             state["state_hash"], tally, before_kill)
            if cycle == kills + 1:
                for t in traders:
                    await t.client.close()
                break
            stop = asyncio.Event()
            tasks = [asyncio.create_task(t.trade(stop)) for t in traders]
            seconds = rng.uniform(*window)
            sampler = asyncio.create_task(sample_state(url, rng.uniform(0, seconds)))
            await asyncio.sleep(seconds)
            leader.kill()
            killed = time.monotonic()
            deadline = killed + TAKEOVER_TIMEOUT_S
            new_url = await asyncio.to_thread(standby.wait_listening, TAKEOVER_TIMEOUT_S, 0.002)
            result.listening_s.append(time.monotonic() - killed)
            await first_ack(url if edges else new_url, cycle, deadline)
            result.first_ack_s.append(time.monotonic() - killed)
            await asyncio.gather(*tasks)
            before_kill = await sampler
            for t in traders:
                await t.client.close()
            old = leader
            leader, standby = standby, matcher(old.dir, old.dir.name, config_text, nats,
                                               standby=True)
            tally.cycles = cycle
            tally.acked = sum(t.acked for t in traders)
            if cycle % 5 == 0 or cycle == kills:
                log(f"kill {cycle}: {tally.acked:,} acked, {tally.orders_checked:,} order "
                    f"checks, {tally.lost} lost; lead again after "
                    f"{result.first_ack_s[-1]:.2f} s")
    except Lost as e:
        tally.lost += 1
        tally.problems.append(str(e))
    finally:
        for process in edges:
            process.stop()
        for process in (leader, standby):
            if process is not None:
                process.stop()
                result.moved_aside += process.output().count("moved to")
        if own:
            nats.stop()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--traders", type=int, default=3)
    parser.add_argument("--gateways", type=int, default=0,
                        help="clients connect through this many gateways (default: to the "
                        "leader)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="gpux-failover-"))
    result = asyncio.run(run_failovers(args.kills, args.seed, args.traders, workdir,
                                       gateways=args.gateways))
    tally = result.checks
    for label, values in (("kill -> new leader listening", result.listening_s),
                          ("kill -> first order acknowledged", result.first_ack_s)):
        ordered = sorted(values)
        print(f"{label}: p50 {statistics.median(ordered):.2f} s, p99 "
              f"{percentile(ordered, 99):.2f} s, max {ordered[-1]:.2f} s over {len(ordered)}")
    print(f"{tally.cycles} kills: {tally.acked:,} acknowledged requests, "
          f"{tally.orders_checked:,} order checks, {tally.fills_checked:,} fill checks, "
          f"{tally.resent} in-flight orders resent, {tally.states_compared} states compared, "
          f"{result.moved_aside} restarted matchers rebuilt from the stream; "
          f"lost {tally.lost}")
    for problem in tally.problems:
        print("PROBLEM:", problem)
    print(f"# data: {workdir}")
    return 1 if tally.lost or tally.problems else 0


if __name__ == "__main__":
    sys.exit(main())
