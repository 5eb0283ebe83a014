"""The `gpux` command line, run as a real process."""
import subprocess
import sys


def gpux(*args):
    return subprocess.run([sys.executable, "-m", "gateway.client.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_demo_trades_the_default_market():
    """`gpux demo` lists 92 instruments, trades, and reports its throughput."""
    run = gpux("demo", "--commands", "5000", "--as-of", "2026-11-25")
    assert run.returncode == 0, run.stderr
    assert "92 instruments listed as of 2026-11-25 (A100, B200, H100, H200; 12 months, " \
        "8 quarters, 3 years in A100)" in run.stdout
    assert "H100-2027-03" in run.stdout
    assert "commands/s through Exchange.process" in run.stdout
    assert "Trade " in run.stdout


def test_demo_with_a_bad_config_says_what_is_wrong(tmp_path):
    """A product config with an unknown key is refused with the product and key named."""
    config = tmp_path / "products.toml"
    config.write_text('[[product]]\ngpu_class = "H100"\nreference_price = "2.10"\nspeed = 1\n')
    run = gpux("demo", "--config", str(config))
    assert run.returncode == 2
    assert "bad product config" in run.stderr and "speed" in run.stderr


def test_unknown_subcommand_is_a_usage_error():
    """An unknown subcommand exits 2 with argparse's usage message."""
    run = gpux("trade")
    assert run.returncode == 2 and "usage: gpux" in run.stderr
