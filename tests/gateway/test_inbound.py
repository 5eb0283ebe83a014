"""The inbound turns (gateway/server/inbound.py) with a loop and a clock the test drives:
each frame costs 1 ms, twice a connection's share of a turn."""
from __future__ import annotations

import logging
from collections import deque

import pytest

from gateway.server import inbound
from gateway.server.inbound import Inbound


class Loop:
    def __init__(self) -> None:
        self.soon: deque = deque()

    def call_soon(self, fn) -> None:
        self.soon.append(fn)

    def run(self) -> None:
        while self.soon:
            self.soon.popleft()()


class Conn:
    def __init__(self, name: str) -> None:
        self.name, self.inbox, self.reading_paused = name, deque(), False
        self.turn, self.turn_ends, self.ended, self.resumed = -1, 0.0, None, 0
        self.state = type("State", (), {"conn_id": name})()

    def resume_reading(self) -> None:
        self.resumed += 1


@pytest.fixture
def turns(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(inbound, "_clock", lambda: clock[0])
    ran, seals = [], []
    loop = Loop()

    def handle(conn, frame):
        clock[0] += 0.001
        if frame == "boom":
            raise RuntimeError("a bug in the core")
        ran.append((conn.name, frame))
    box = Inbound(loop, handle, lambda: seals.append(len(ran)))
    box.ran, box.run_loop = ran, loop.run
    return box


def test_a_burst_waits_its_turn_and_each_connection_keeps_its_order(turns):
    a, b = Conn("a"), Conn("b")
    for i in range(6):
        turns.received(a, f"a{i}")
    turns.received(b, "b0")                    # read after a's burst, in the same turn
    assert turns.ran == [("a", "a0"), ("b", "b0")]    # a's share went on its first frame
    turns.sealed()
    turns.received(b, "b1")
    turns.run_loop()
    assert [f for c, f in turns.ran if c == "a"] == [f"a{i}" for i in range(6)]
    assert [f for c, f in turns.ran if c == "b"] == ["b0", "b1"]
    assert turns.ran.index(("b", "b1")) < turns.ran.index(("a", "a5"))


def test_a_full_inbox_pauses_reading_until_it_has_run(turns):
    a = Conn("a")
    full = [turns.received(a, i) for i in range(inbound.INBOX_FRAMES + 2)]
    assert full[-2:] == [True, True] and not any(full[:-2])   # the first ran at once
    turns.run_loop()
    assert a.resumed == 1 and not a.reading_paused and len(turns.ran) == len(full)


def test_a_failing_frame_is_logged_and_the_round_goes_on(turns, caplog):
    """An exception out of a backlog's frame left the scheduler stopped for good: no
    backlog ran again, paused connections stayed paused, and an ending connection never
    ended (so its cancel-on-disconnect never ran)."""
    a, b = Conn("a"), Conn("b")
    for frame in ["a0", "a1", "boom", "a3"]:
        turns.received(a, frame)
    turns.received(b, "b0")
    with caplog.at_level(logging.ERROR):
        turns.run_loop()
    assert "a frame of connection a failed" in caplog.text
    assert turns.ran == [("a", "a0"), ("b", "b0"), ("a", "a1"), ("a", "a3")]
    turns.sealed()
    turns.received(b, "b1")
    assert turns.ran[-1] == ("b", "b1")


def test_a_connection_that_goes_with_a_backlog_ends_after_it_in_turns(turns):
    """A connection that pipelined a read's worth of frames and reset had them all run at
    once when it went (968 orders, 20 ms). Now they run in turns, then it ends."""
    a, b = Conn("a"), Conn("b")
    for i in range(40):
        turns.received(a, i)
    gone = []
    turns.ended(a, lambda: gone.append(len(turns.ran)))
    assert gone == [] and len(turns.ran) == 1
    turns.sealed()
    turns.received(b, "b")
    turns.run_loop()
    assert gone == [41] and turns.ran.index(("b", "b")) < 40
    turns.ended(b, lambda: gone.append("b"))   # nothing waiting: it ends at once
    assert gone[-1] == "b"


def test_stopping_runs_every_backlog_and_takes_no_more(turns):
    a = Conn("a")
    for i in range(10):
        turns.received(a, i)
    gone = []
    turns.ended(a, lambda: gone.append(True))
    turns.finish()
    assert len(turns.ran) == 10 and gone == [True]
    turns.run_loop()
    assert len(turns.ran) == 10
