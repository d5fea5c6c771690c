"""The server secret (setting, else made once under home with mode 0600) and values signed with it;
the storefront's forgetting buckets and the client address they are keyed by."""

from __future__ import annotations

import asyncio
import stat

import pytest
from pydantic import SecretStr
from starlette.requests import Request

from modelshop.errors import ValidationError
from modelshop.settings import Settings
from modelshop.web import signing
from modelshop.web.throttle import LocalBuckets, client_address


def test_the_secret_is_made_once_under_home_and_kept_across_restarts(tmp_path):
    home = tmp_path / "home"
    signed = signing.signer(Settings(home=home)).sign("visitor", "abc")
    path = home / signing.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(home.iterdir()) == [path]  # no temporary file left behind
    signing._home_secret.cache_clear()  # a restart: nothing cached, only the file
    assert signing.signer(Settings(home=home)).unsign("visitor", signed) == "abc"
    other = signing.signer(Settings(home=tmp_path / "elsewhere"))
    assert other.unsign("visitor", signed) is None


def test_the_setting_wins_and_a_short_one_is_refused(tmp_path):
    key = SecretStr("k" * 32)
    a = signing.signer(Settings(home=tmp_path / "a", secret_key=key))
    b = signing.signer(Settings(home=tmp_path / "b", secret_key=key))
    assert b.unsign("visitor", a.sign("visitor", "x1")) == "x1"  # replicas sharing the setting agree
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="MODELSHOP_SECRET_KEY is shorter than 16 characters"):
        Settings(home=tmp_path, secret_key=SecretStr("short"))


def test_a_value_signed_for_one_purpose_is_refused_for_another(tmp_path):
    s = signing.signer(Settings(home=tmp_path))
    signed = s.sign("visitor", "v1")
    assert s.unsign("visitor", signed) == "v1"
    assert s.unsign("signup", signed) is None
    for bad in (None, "", "v1", "v1.", signed + "0", "v2." + signed.partition(".")[2], "v1.ü"):
        assert s.unsign("visitor", bad) is None, bad


def test_an_unusable_secret_file_says_what_to_do(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / signing.SECRET_FILE).write_text("\n")
    with pytest.raises(ValidationError, match="holds no usable secret; delete it .* or set MODELSHOP_SECRET_KEY"):
        signing.signer(Settings(home=home))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_local_buckets_refill_forget_after_a_minute_and_stay_bounded():
    clock = Clock()
    buckets = LocalBuckets(max_keys=3, clock=clock)
    take = lambda key, rpm=2: asyncio.run(buckets.take(key, rpm))  # noqa: E731
    assert [take("a"), take("a")] == [0, 0]
    assert take("a") == pytest.approx(30.0)  # 2 a minute: one more in 30 s
    clock.now += 30
    assert take("a") == 0
    for key in ("b", "c"):
        take(key)
    assert len(buckets) == 3
    take("d")  # one key too many: the least recently used ("a") goes
    assert len(buckets) == 3 and take("b") == 0 and take("b") > 0
    clock.now += 61  # untouched for a minute: full again, so nothing needs to be kept
    take("e")
    assert len(buckets) == 1


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 1)})


def test_the_client_address_is_the_connections_unless_behind_configured_proxies():
    assert client_address(_request("192.0.2.1", "10.0.0.1"), 0) == "192.0.2.1"
    assert client_address(_request("127.0.0.1", "10.0.0.1, 198.51.100.2"), 1) == "198.51.100.2"
    assert client_address(_request("127.0.0.1", "10.0.0.1, 198.51.100.2"), 2) == "10.0.0.1"
    assert client_address(_request("127.0.0.1", "198.51.100.2"), 2) == "127.0.0.1"  # fewer hops than proxies
    # one IPv6 subscriber holds a /64: every address in it counts as one
    assert client_address(_request("2001:db8:1:2:aaaa::1"), 0) == client_address(_request("2001:db8:1:2::9"), 0)
    assert client_address(_request("::ffff:192.0.2.7"), 0) == "192.0.2.7"
