"""gateway.core.limits and gateway.core.auth: token buckets and the login check, without sockets."""
from __future__ import annotations

import pytest

from gateway.core.auth import Accounts, sign
from gateway.config import AccountConfig, Bucket, ConfigError, load_config
from gateway.core.errors import RpcError
from gateway.core.promises import LoginSeen, Promises
from gateway.core.limits import TokenBucket


def test_bucket_allows_a_burst_then_refills_at_its_rate():
    """Burst 3 at 2/s: three pass, the fourth waits 0.5 s, and after 0.5 s one more passes."""
    bucket = TokenBucket(Bucket(2.0, 3), now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) > 0


def test_a_bucket_is_full_again_once_its_burst_has_refilled():
    bucket = TokenBucket(Bucket(2.0, 3), now=100.0)
    assert bucket.full(100.0)
    bucket.take(100.0, 2)
    assert not bucket.full(100.5) and bucket.full(101.0)


def test_a_bucket_that_could_never_refill_is_refused_by_the_config():
    """Rate 0 or burst 0 would refuse forever with a meaningless retry_after_ms."""
    for bucket in ("[0.0, 5]", "[1.0, 0]"):
        with pytest.raises(ConfigError, match="orders"):
            load_config(f"[limits.roles.trader]\norders = {bucket}\n")


def test_a_role_table_changes_only_the_keys_it_names():
    """[limits.roles.market_maker] with orders keeps the market maker's other limits."""
    limits = load_config("[limits.roles.market_maker]\norders = [800.0, 1600]\n").limits
    mm = limits.for_role("market_maker")
    assert mm.orders == Bucket(800.0, 1600)
    assert (mm.requests, mm.account_orders, mm.max_open_orders) == \
        (Bucket(100.0, 200), Bucket(1000.0, 2000), 5000)
    assert load_config("[limits.roles.anonymous]\nrequests = [5.0, 5]\n").limits.for_role(
        "anonymous").requests == Bucket(5.0, 5)


def _accounts():
    return Accounts([AccountConfig(account="a", role="trader", api_key="key-0001",
                                   api_secret="s" * 32)], window_ms=30_000)


def test_a_nonce_may_come_back_once_its_window_has_passed():
    """A nonce is refused within the window and forgotten after it (the record of it is
    the venue's promises, which a login's LoginSeen command writes)."""
    accounts, promises = _accounts(), Promises()

    def login(t: int, nonce: str):
        account = accounts.login("key-0001", t, nonce, sign("s" * 32, t, nonce), now_ms=t,
                                 nonce_used=promises.nonce_used)
        promises.process(LoginSeen(ts_ns=0, account_id=account.account_id, nonce=nonce,
                                   at_ms=t, until_ms=t + accounts.window_ms), None)
        return account
    t = 1_000_000
    assert login(t, "n").account == "a"
    with pytest.raises(RpcError) as caught:
        login(t + 1, "n")
    assert caught.value.reason == "nonce_reused"
    assert login(t + 31_000, "n")
    login(t + 60_000, "other")          # expired nonces are forgotten as logins go on
    assert list(promises.nonces) == [(1, "n"), (1, "other")]
    login(t + 93_001, "third")
    assert list(promises.nonces) == [(1, "third")]


def test_account_ids_are_given_in_order_and_duplicates_refused():
    """Accounts without an id get the next free one; a key used twice is an error."""
    a = AccountConfig(account="a", role="trader", api_key="key-0001", api_secret="s" * 32,
                      account_id=1)
    b = AccountConfig(account="b", role="viewer", api_key="key-0002", api_secret="s" * 32)
    assert Accounts([a, b]).by_name["b"].account_id == 2
    with pytest.raises(ValueError, match="used twice"):
        Accounts([a, AccountConfig(account="c", role="trader", api_key="key-0001",
                                   api_secret="t" * 32)])


def test_config_sections_are_checked():
    """Unknown keys, wrong types and unknown roles are refused with their path."""
    config = load_config('[server]\nport = 9000\n[limits.roles.market_maker]\n'
                         'orders = [800.0, 1600]\n[[product]]\ngpu_class = "H100"\n'
                         'reference_price = "2.10"\n')
    assert config.server.port == 9000
    assert config.limits.for_role("market_maker").orders == Bucket(800.0, 1600)
    assert [p.gpu_class for p in config.products] == ["H100"]
    for text, words in (("[server]\nport = \"x\"\n", "port"),
                        ("[limits.roles.trader]\norders = [1.0]\n", "orders"),
                        ("[limits.roles.pirate]\norders = [1.0, 1]\n", "pirate"),
                        ("[[account]]\naccount = \"a\"\nrole = \"king\"\n", "role"),
                        ("[limits\n", "invalid TOML")):
        with pytest.raises(ConfigError, match=words):
            load_config(text)


def test_an_accounts_connections_share_its_request_bucket(tmp_path):
    """Issue 20 (found by the stall budget, issue 21): each connection had its own request
    bucket and nothing more, so a client that reconnected got a new burst every time (1.2
    M account.fills in 10 s over 4,900 connections). An account's connections now also
    draw on one bucket of the account's, which no reconnect refills."""
    from inproc import InProcess
    venue = InProcess(tmp_path / "data", "[limits.roles.trader]\nrequests = [0.01, 6]\n"
                      "account_requests = [0.01, 8]\n")
    first = venue.session("trader-1")        # a login gives the connection its role's bucket
    reasons = [r.get("error", {}).get("data", {}).get("reason", "ok") for r in
               (venue.call(first, "session.test") for _ in range(7))]
    assert reasons == ["ok"] * 6 + ["rate_limited"]             # its own burst of 6
    second = venue.session("trader-1")
    reasons = [r.get("error", {}).get("data", {}).get("reason", "ok") for r in
               (venue.call(second, "session.test") for _ in range(5))]
    assert reasons == ["ok"] * 2 + ["rate_limited"] * 3         # the account's 8 in all
    other = venue.session("trader-2")                            # another account: its own
    assert "result" in venue.call(other, "session.test")
    anonymous = venue.session()                                  # no account: per connection
    assert "result" in venue.call(anonymous, "session.test")

