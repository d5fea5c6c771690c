"""The storefront's limits on anonymous callers: who a caller is, and buckets that forget.

Each limited action (playground, chat, ratings, session reads, new visitors' page views) draws
from up to three buckets: the visitor's (its signed cookie id; a caller without a valid one
shares its address's), the client address's (every visitor behind it together) and, for the
costly ones, the whole storefront's. Dropping or forging the cookie therefore buys no budget.

The address is the connection's (the ASGI scope's client), or with `MODELSHOP_PROXY_HOPS=N` the
one the outermost of N trusted proxies appended to X-Forwarded-For; an IPv6 address counts by
its /64 (one subscriber's share). Buckets are keyed by a hash of it, never the address itself.

In one process the buckets live in `LocalBuckets`, which forgets a bucket one minute after its
last use (by then it is full again, so forgetting changes nothing) and holds at most `max_keys`;
with `MODELSHOP_REDIS_URL` they live in Redis (shared by replicas, expiring there the same way).
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections import OrderedDict

from fastapi import Request

from modelshop.billing.limits import RedisLimiter
from modelshop.errors import RateLimited
from modelshop.settings import Settings

REFILL_S = 60.0  # an rpm bucket holds one minute's allowance: untouched this long, it is full again


class LocalBuckets:
    """Token buckets (requests per minute) in this process, bounded in time and in number."""

    def __init__(self, max_keys: int = 100_000, clock=time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (level, at), oldest first

    def __len__(self) -> int:
        return len(self._state)

    async def take(self, key: str, rpm: int) -> float:
        """Take one call from `key`'s bucket: 0 when allowed, else the seconds until it would be."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            level, at = self._state.pop(key, (float(rpm), now))
            level = min(float(rpm), level + (now - at) * rpm / REFILL_S)
            wait = 0.0 if level >= 1 else (1 - level) * REFILL_S / rpm
            self._state[key] = (level - 1 if wait == 0 else level, now)
            while len(self._state) > self.max_keys:  # a flood of keys: the least recently used go first
                self._state.popitem(last=False)
            return wait

    def _forget(self, now: float) -> None:
        while self._state:
            key, (_level, at) = next(iter(self._state.items()))
            if now - at < REFILL_S:
                return
            del self._state[key]


class RedisBuckets:
    """The same buckets in Redis, through billing's limiter script (expiring keys, shared by replicas)."""

    def __init__(self, url: str, prefix: str) -> None:
        self._limiter = RedisLimiter(url, prefix)

    async def take(self, key: str, rpm: int) -> float:
        verdict = await self._limiter.acquire(key, rpm, None, 0)  # type: ignore[arg-type]  # any str key
        return 0.0 if verdict.allowed else verdict.retry_after


def buckets_of(request: Request, settings: Settings):
    """The app's storefront buckets, made on first use."""
    state = request.app.state
    buckets = getattr(state, "storefront_buckets", None)
    if buckets is None:
        buckets = state.storefront_buckets = (
            RedisBuckets(settings.redis_url, f"{settings.rate_limit_prefix}:store") if settings.redis_url
            else LocalBuckets())
    return buckets


def client_address(request: Request, proxy_hops: int) -> str:
    """The caller's address: the connection's, or the one the outermost of `proxy_hops` proxies saw."""
    host = request.client.host if request.client else ""
    if proxy_hops:
        chain = [a.strip() for a in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if a.strip()]
        if len(chain) >= proxy_hops:
            host = chain[-proxy_hops]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def address_key(request: Request, settings: Settings) -> str:
    """A short hash of the caller's address: what keys its buckets (the address itself is not kept)."""
    return hashlib.sha256(f"ip:{client_address(request, settings.proxy_hops)}".encode()).hexdigest()[:24]


async def admit(request: Request, settings: Settings, limits: list[tuple[str, int, str]]) -> None:
    """Take one call from each (key, rpm, message) bucket in turn; RateLimited with the message of the
    first one short, its `{n}` the bucket's rpm and `{s}` the seconds to wait."""
    buckets = buckets_of(request, settings)
    for key, rpm, message in limits:
        wait = await buckets.take(key, rpm)
        if wait:
            raise RateLimited(message.format(n=rpm, s=max(1, round(wait))), retry_after=wait)
