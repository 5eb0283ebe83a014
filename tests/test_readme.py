"""The README's worked examples run as written, and its error table is the server's."""
import pathlib
import re
import sys

from gateway.core.errors import markdown_table

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "tests" / "gateway"))

from live import LiveServer, quoted, start_demo, stop_demo, wait_for  # noqa: E402


def python_block(heading: str) -> str:
    """Return the first python block after ``heading``."""
    section = README[README.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_against_live_server(heading: str, data_dir: pathlib.Path) -> None:
    """Run an example written for `make run` against a test server (its URL and data dir)
    with the demo's participants trading, as `make run` has them."""
    live = LiveServer(data_dir)
    demo = start_demo(live)
    code = (python_block(heading).replace("ws://127.0.0.1:8765/ws", live.url)
            .replace('"data/demo-accounts.json"', repr(str(data_dir / "demo-accounts.json"))))
    try:
        wait_for(live, lambda: quoted(live.server))
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    finally:
        stop_demo(live, demo)
        live.stop()


def test_engine_example_prints_what_the_readme_says(capsys):
    """The engine example executes and ends with the ladder it shows."""
    exec(compile(python_block("### The engine alone"), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "[('2.145', 28, 1)]"
    assert sum(line.startswith("Trade(") for line in out) == 2


def test_websocket_example_places_an_order_and_is_refused_off_tick(tmp_path, capsys):
    """The raw websocket example logs in, rests an order and gets price_off_tick."""
    run_against_live_server("### From any websocket client", tmp_path / "data")
    out = capsys.readouterr().out.splitlines()
    assert "'role': 'trader'" in out[0]
    assert "'status': 'open'" in out[1] and "'price': '1.950'" in out[1]
    assert "'reason': 'price_off_tick'" in out[2]


def test_error_table_is_the_servers():
    """The README's error table is exactly the one gateway/core/errors.py generates."""
    assert markdown_table() in README


def test_client_example_prints_what_the_readme_says(tmp_path, capsys):
    """The Python client example trades against a live server and prints what it shows."""
    run_against_live_server("### From Python, with the client", tmp_path / "data")
    assert capsys.readouterr().out.splitlines() == [
        "open 1024", "filled 100", "price_off_tick price", "cancelled"]
