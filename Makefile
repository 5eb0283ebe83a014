# The two set-up commands of the README: `make run` and `make test`.
# Each creates the virtual environment and builds the Cython extension first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: cluster failover simulate run test browser bench throughput loadgen fanout durability transports requote fsync-floor crash recovery demo-load strips hedge stall build clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'cython>=3.0' 'setuptools>=68' wheel
	$(PY) -m pip install -q --no-build-isolation -e '.[test,bench]'
	touch $(STAMP)

build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

# The exchange on its embedded default: the default market, demo accounts in ./data, and
# simulated participants trading it; the market page is at http://127.0.0.1:8765/.
run: build
	$(VENV)/bin/gpux serve --demo --data-dir data

# The cluster on this machine: three nats-server nodes (JetStream), two gateways on :8765
# and :8766 (connect there), a leading matcher on :8767 and a standby on :8768 that takes
# over when the leader dies.
cluster: build
	$(PY) -m gateway.cluster.local --dir cluster

# SIGKILL the leading matcher 20 times mid-trading: how long until the standby leads, and
# that nothing acknowledged is lost (README figures).
failover: build
	$(PY) -m bench.failover --kills 20

# The benchmarks run once each, untimed, so their correctness checks run in CI too.
test: build browser
	$(PY) -m pytest -q tests bench --benchmark-disable

# The deterministic simulation of the venue over SEEDS seeds (make test runs 300).
SEEDS ?= 1000
simulate: build
	$(PY) tests/gateway/simulation.py --seeds $(SEEDS)

# Debian's Chromium for the page's end-to-end test (Playwright drives it; nothing is downloaded).
browser:
	@tests/install-chromium.sh

bench: build
	$(PY) -m pytest bench -q --benchmark-only --benchmark-columns=min,median,rounds

throughput: build
	$(PY) -m bench.throughput

# The gateway against a bare echo server, and market-data fan-out (README figures).
loadgen: build
	$(PY) -m bench.loadgen --connections 1 50 --seconds 5 --warmup 1 --repeat 3

fanout: build
	$(PY) -m bench.fanout --subscribers 500 --rate 50 100 200 400 --seconds 5 --warmup 2 --repeat 3

# Durability: SIGKILL the server mid-trading and check nothing acked was lost; recovery speed.
durability: build
	$(PY) -m bench.loadgen --targets gpux gpux-unsafe --connections 50 --seconds 5 --warmup 1 --repeat 3

# The websocket library: picows (the default) against websockets, behind the same adapter.
transports: build
	$(PY) -m bench.loadgen --targets gpux gpux-picows --connections 1 50 --modes sync paced pipelined --seconds 5 --warmup 1 --repeat 3

# A market maker's re-quote: one order.replace per slot against order.mass_quote.
requote: build
	$(PY) -m bench.requote --rounds 200 --repeat 3

# The disk's floor under an fsync'd ack.
fsync-floor: build
	$(PY) -m bench.fsync_floor

crash: build
	$(PY) -m bench.crash --cycles 100

recovery: build
	$(PY) -m bench.recovery

# What the demo's participants and an open market page cost the server.
# A 12-month strip over the websocket beside the single orders it replaces (README figures).
strips: build
	$(PY) -m bench.strips --n 2000 --block 100

# A 36-month hedge plan over the websocket beside a light read (README figures).
hedge: build
	$(PY) -m bench.hedge --n 1000 --months 36

# Each attack of a hostile client against a real server while a clean client calls
# session.test every 100 ms (README figures).
stall: build
	$(PY) -m bench.stall --seconds 10

demo-load: build browser
	$(PY) -m bench.demo_load --seconds 30 --warmup 10 --repeat 3

clean:
	rm -rf build $(VENV) engine/*.c engine/*.so engine/*.html clearing/*.c clearing/*.so clearing/*.html
