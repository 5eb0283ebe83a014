"""Shared pieces of the gateway load generators: server processes, accounts, config, CPUs.

Both servers under test (``gpux serve`` and bench.echo_server) run as real
processes, started here with their stdout in a log file (read for the
``listening on ws://HOST:PORT/ws`` line) and stopped with SIGTERM. A server
can be pinned to a set of CPUs, and its CPU time is read from /proc so a
run can say whether the server or the client was the busy side.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.core.auth import sign

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
AS_OF = "2026-11-25"
SYMBOL = "H100-2027-03"
HIGH_BUCKET = "[1000000.0, 1000000]"
_LISTENING = re.compile(r"listening on ws://([^\s/]+):(\d+)/ws")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def account_names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(1, n + 1)]


def credentials(name: str) -> tuple[str, str]:
    """A deterministic (api_key, api_secret) for a benchmark account."""
    return f"key-{name}", f"secret-{name}-0123456789abcdef"


def gpux_config(accounts: list[str], *, queue_soft: int | None = None,
                queue_hard: int | None = None) -> str:
    """Return TOML: ``accounts`` as market makers with rate limits far above any load here."""
    # The liquidity account rests 200,000 lots a side: above the default position limit.
    lines = ["[clearing]", "position_limit = 10000000", "", "[limits]",
             "flood_strikes = 1000000", f"new_connections_per_address = {HIGH_BUCKET}"]
    if queue_soft is not None:
        lines.append(f"queue_soft = {queue_soft}")
    if queue_hard is not None:
        lines.append(f"queue_hard = {queue_hard}")
    for role in ("market_maker", "trader"):
        lines += high_limits(role) + [f"subscriptions = {HIGH_BUCKET}"]
    for i, name in enumerate(accounts, start=1):
        lines += account_toml(i, name, "market_maker")
    return "\n".join(lines) + "\n"


def high_limits(role: str) -> list[str]:
    """TOML lines: the role's order, request and login buckets, its own and its accounts',
    far above any load."""
    return ["", f"[limits.roles.{role}]", f"orders = {HIGH_BUCKET}", f"requests = {HIGH_BUCKET}",
            f"account_orders = {HIGH_BUCKET}", f"account_requests = {HIGH_BUCKET}",
            f"account_logins = {HIGH_BUCKET}"]


def account_toml(account_id: int, name: str, role: str) -> list[str]:
    """TOML lines: a benchmark account (credentials(name)) with $100 M of collateral."""
    key, secret = credentials(name)
    return ["", "[[account]]", f'account = "{name}"', f'role = "{role}"', f'api_key = "{key}"',
            f'api_secret = "{secret}"', f"account_id = {account_id}",
            'collateral = "100000000"']


def login_params(name: str, nonce: str) -> dict:
    key, secret = credentials(name)
    ts = int(time.time() * 1000)
    return {"api_key": key, "timestamp": ts, "nonce": nonce, "signature": sign(secret, ts, nonce)}


def raise_nofile(want: int = 65536) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``want`` (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def pin(cpus) -> None:
    """Pin this process to ``cpus`` (an iterable of CPU numbers), if given and possible."""
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
        except (AttributeError, OSError):
            pass


def parse_cpus(text: str | None) -> list[int] | None:
    """``"0"``, ``"0,1"`` or ``"0-1"`` -> a list of CPU numbers; None or "" -> None."""
    if not text:
        return None
    cpus: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus += range(int(lo), int(hi) + 1)
        else:
            cpus.append(int(part))
    return cpus


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# A kind of server: its gpux command and its data directory in the work directory.
COMMANDS = {"gpux": ("serve", "data"), "matcher": ("matcher", "matcher"),
            "gateway": ("gateway", "gateway")}


class ServerProcess:
    """A server under test in its own process.

    Args:
        kind: "gpux", "matcher" or "gateway" (a cluster's: ``args`` name its NATS servers),
            or "echo".
        cpus: CPUs to pin it to (None: no pinning).
        config_text: gpux's TOML config.
        wrapper: A command prefix, e.g. a profiler.
        env: Extra environment variables.
        profiled: Run gpux under bench.serve_profiled (its env variables say what to record).
    """

    def __init__(self, kind: str, *, cpus=None, config_text: str | None = None,
                 wrapper: list[str] | None = None, env: dict | None = None,
                 profiled: bool = False, startup_timeout: float | None = 30.0,
                 workdir: Path | None = None, args: list[str] | None = None,
                 log_name: str = "server.log") -> None:
        self.kind = kind
        self.dir = workdir or Path(tempfile.mkdtemp(prefix=f"gpux-bench-{kind}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = workdir is not None          # a caller's directory outlives the process
        self.log_path = self.dir / log_name
        if kind in COMMANDS:
            config = self.dir / "config.toml"
            config.write_text(config_text or "")
            module = "bench.serve_profiled" if profiled else "gateway.client.cli"
            command, data = COMMANDS[kind]
            cmd = [PYTHON, "-m", module, command, "--data-dir", str(self.dir / data),
                   "--port", "0", "--as-of", AS_OF, "--config", str(config)] + (args or [])
        elif kind == "echo":
            cmd = [PYTHON, "-m", "bench.echo_server", "--port", "0"]
        else:
            raise ValueError(kind)
        cmd = list(wrapper or []) + cmd
        self.log = open(self.log_path, "ab")
        self.log_start = self.log.tell()      # a restart appends to the same log
        cpu_set = set(cpus) if cpus else None

        def preexec() -> None:
            if cpu_set:
                os.sched_setaffinity(0, cpu_set)
            raise_nofile()

        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=preexec,
                                     env={**os.environ, **(env or {})})
        self.host, self.port = None, None
        if startup_timeout is not None:
            self.wait_listening(startup_timeout)

    def wait_listening(self, timeout: float, poll: float = 0.02) -> str:
        """Wait until the server says where it listens (a standby: once it leads); return
        its websocket URL."""
        deadline = time.monotonic() + timeout
        while True:
            match = _LISTENING.search(self.output())
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return self.url
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise RuntimeError(f"{self.kind} server did not start:\n{output}")
            time.sleep(poll)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def output(self) -> str:
        """What this process has logged (not an earlier one's in the same directory)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def kill(self) -> int:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then wait; the temporary directory is removed unless the exit was unclean."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
            if self.proc.returncode == 0 and not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
            else:
                print(f"# {self.kind} server exited with {self.proc.returncode}; its log: "
                      f"{self.log_path}", file=sys.stderr)
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def percentile(sorted_values, q: float):
    """The q-th percentile (0..100) of an ascending sequence, nearest rank; None if empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, min(n, int(-(-q * n // 100))))      # ceil(q/100 * n)
    return sorted_values[rank - 1]


def fmt_us(ns) -> str:
    """Nanoseconds as a short latency string: 82us, 1.60ms."""
    if ns is None:
        return "-"
    if ns < 1_000_000:
        return f"{ns / 1000:.0f}us"
    return f"{ns / 1e6:.2f}ms"


def cpu_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])
    return total - idle, steal, total


def machine_busy(before: tuple[int, int, int], after: tuple[int, int, int]) -> tuple[float, float]:
    """(busy, steal) fraction of all CPUs between two cpu_jiffies() readings."""
    total = after[2] - before[2]
    if total <= 0:
        return 0.0, 0.0
    return (after[0] - before[0]) / total, (after[1] - before[1]) / total


def py_spy(pid: int, seconds: float, output: Path, cpus=None, rate: int = 250):
    """Start sampling ``pid`` with py-spy for ``seconds`` (collapsed stacks); return the Popen.

    PY_SPY_EXTRA in the environment adds options (e.g. ``--native`` to see C
    frames such as the garbage collector's; py-spy then has to stop the process
    for each sample instead of reading it while it runs). py-spy's own messages
    go to OUTPUT.log.
    """
    exe = Path(PYTHON).parent / "py-spy"
    extra = os.environ.get("PY_SPY_EXTRA", "").split()
    cmd = [str(exe if exe.exists() else "py-spy"), "record", "--pid", str(pid), "--duration",
           str(max(1, round(seconds))), "--rate", str(rate), "--format", "raw",
           "--output", str(output)] + extra
    if "--native" not in extra:
        cmd.append("--nonblocking")
    cpu_set = set(cpus) if cpus else None
    log = open(f"{output}.log", "wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpu_set)) if cpu_set
                            else None)


def latency_table(times: dict[str, list[float]]) -> str:
    """p50 and p99 (ms) of each kind of request, and what one client gets at one in flight."""
    lines = [f"{'request':<8} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'per s (1 in flight)':>20}"]
    for kind, values in times.items():
        values = sorted(values)
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        lines.append(f"{kind:<8} {len(values):>6} {statistics.median(values) * 1e3:>8.3f} "
                     f"{p99 * 1e3:>8.3f} {len(values) / sum(values):>20,.0f}")
    return "\n".join(lines)
