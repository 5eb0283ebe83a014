"""What the demo costs: the server's CPU and journal with the participants, and a page open.

    python -m bench.demo_load [--seconds 30] [--warmup 10] [--repeat 3]

Three configurations of a real `gpux serve` process, measured alternately in
one run, each over the same window after a warm-up:

- ``idle``: no client at all (the baseline: the scheduler's timer and mark
  step each second);
- ``demo``: `--demo`, the simulated participants trading over the websocket
  in the server's process;
- ``demo+page``: the same with the market page open in headless Chromium
  (one anonymous session streaming a class's curve, tickers, index, and a
  contract's book and trades).

Each row gives the commands journaled a second (from admin.state's seq), the
journal's growth, the server's CPU (user + system, all threads, /proc) and
messages the page received a second. Medians over the repeats.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shutil
import statistics
import time
from pathlib import Path

from bench.harness import ServerProcess
from bench.throughput import machine
from gateway.client.sdk import Client

CONFIGS = ("idle", "demo", "demo+page")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


async def journaled_seq(url: str, data_dir: Path) -> int:
    """The last committed journal seq, asked of the server as its admin."""
    admin = next(a for a in json.loads((data_dir / "demo-accounts.json").read_text())
                 if a["role"] == "admin")
    async with Client(url, api_key=admin["api_key"], api_secret=admin["api_secret"]) as c:
        return (await c.call("admin.state"))["seq"]


def journal_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "journal").glob("*.log"))


async def open_page(url: str):
    """Headless Chromium on the market page; returns (playwright, browser, frame counter)."""
    from playwright.async_api import async_playwright
    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                               args=CHROMIUM_FLAGS)
    page = await browser.new_page(viewport={"width": 1366, "height": 768})
    received = [0]
    page.on("websocket", lambda ws: ws.on("framereceived",
                                          lambda _: received.__setitem__(0, received[0] + 1)))
    await page.goto(url)
    await page.wait_for_selector('#status[data-state="live"]')
    return playwright, browser, received


async def measure(config: str, seconds: float, warmup: float) -> dict:
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    args = ["--as-of", today] + (["--demo"] if config != "idle" else [])
    server = ServerProcess("gpux", args=args)
    data_dir = server.dir / "data"
    url = f"ws://127.0.0.1:{server.port}/ws"
    page = None
    try:
        if config == "demo+page":
            page = await open_page(f"http://127.0.0.1:{server.port}/")
        await asyncio.sleep(warmup)
        seq0, bytes0, cpu0 = await journaled_seq(url, data_dir), journal_bytes(data_dir), \
            server.cpu_seconds()
        frames0, t0 = page[2][0] if page else 0, time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu = server.cpu_seconds() - cpu0
        seq, size = await journaled_seq(url, data_dir), journal_bytes(data_dir)
        frames = (page[2][0] - frames0) if page else 0
    finally:
        if page is not None:
            await page[1].close()
            await page[0].stop()
        server.stop()
    return {"commands": (seq - seq0) / elapsed, "journal": (size - bytes0) / elapsed,
            "cpu": cpu / elapsed, "frames": frames / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    args = parser.parse_args(argv)
    if "demo+page" in args.configs and shutil.which("chromium") is None:
        parser.error("demo+page needs Debian's chromium (make browser installs it)")
    print(f"# {machine()}; {args.seconds:g} s measured after {args.warmup:g} s; "
          f"median of {args.repeat}", flush=True)
    runs: dict[str, list[dict]] = {c: [] for c in args.configs}
    for _ in range(args.repeat):
        for config in args.configs:
            runs[config].append(asyncio.run(measure(config, args.seconds, args.warmup)))
    base = statistics.median(r["cpu"] for r in runs.get("idle", [])) if "idle" in runs else None
    print(f"{'config':<10} {'commands/s':>10} {'journal KiB/s':>13} {'server cpu':>10} "
          f"{'vs idle':>8} {'page msgs/s':>11}")
    for config, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        ratio = f"{med['cpu'] / base:.1f}x" if base else "-"
        print(f"{config:<10} {med['commands']:>10,.1f} {med['journal'] / 1024:>13,.1f} "
              f"{100 * med['cpu']:>9.1f}% {ratio:>8} {med['frames']:>11,.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
