"""Per-key rate limits: token buckets for requests per minute (rpm) and tokens per minute (tpm).

A bucket holds up to one minute's allowance and refills continuously. A call takes 1 from the
rpm bucket and its token count from the tpm bucket, both or neither. `LocalLimiter` keeps the
buckets in this process (the embedded default); `RedisLimiter` keeps them in Redis and takes
them in one Lua script, so every replica sharing the Redis enforces one limit.

Both also keep quota holds (`reserve`/`release`): units of calls admitted under a blocking quota
and not yet committed to the ledger, each with an expiry, so concurrent calls (on one replica, or
on every replica sharing the Redis) count one another's (see `BillingGate._admit_plan`). A call
holding in several buckets takes them in one step (`reserve_many`: one lock, one Lua script), so
of two calls the later always sees all of the earlier's holds, whatever buckets each holds in.

When Redis cannot be reached, each kind of check fails open or closed as the settings say
(`rate_limits_when_redis_down`, default open: the API stays up without rpm/tpm limits;
`quotas_when_redis_down`, default closed: a quota or a prepaid wallet is never overspent because
the calls under way on other replicas are unknown, so such calls get a 503 that names Redis).
Either way one warning is logged per outage, and `health()` says so for `/health`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from modelshop.errors import ServiceUnavailable
from modelshop.settings import Settings

log = logging.getLogger(__name__)

# Each Redis call sits on the request path: past this it counts as down instead of holding the call
# (a URL's own socket_timeout / socket_connect_timeout parameters win).
REDIS_TIMEOUT_S = 1.0
OUTAGE_RETRY_AFTER_S = 5   # what a 503 for an unreachable Redis tells clients to wait


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int            # the rpm limit (the one the RateLimit-* headers describe)
    remaining: int        # requests left in the rpm bucket after this call
    reset: float          # seconds until the rpm bucket is full again
    retry_after: float    # seconds until this call would be allowed (0 when allowed)
    denied_by: str = ""   # "rpm" or "tpm": the bucket that was short


def _buckets(rpm: int | None, tpm: int | None, tokens: int) -> list[tuple[str, float, float, float]]:
    """(name, capacity, refill per second, cost) of each bucket this call draws from."""
    out = []
    if rpm:
        out.append(("rpm", float(rpm), rpm / 60.0, 1.0))
    if tpm and tokens:
        out.append(("tpm", float(tpm), tpm / 60.0, float(tokens)))
    return out


class LocalLimiter:
    """Buckets in a dict, under a lock; right for one process."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[tuple[int, str], tuple[float, float]] = {}
        self._held: dict[str, dict[str, tuple[int, float]]] = {}    # quota reservations: bucket → member

    async def acquire(self, key_id: int, rpm: int | None, tpm: int | None, tokens: int) -> Verdict:
        buckets = _buckets(rpm, tpm, tokens)
        with self._lock:
            now = self._clock()
            levels = []
            for name, cap, per_s, _cost in buckets:
                level, at = self._state.get((key_id, name), (cap, now))
                levels.append(min(cap, level + (now - at) * per_s))
            wait = max([(cost - lvl) / per_s for (_, _, per_s, cost), lvl in zip(buckets, levels, strict=True)
                        if lvl < cost] or [0.0])
            if wait == 0:
                levels = [lvl - b[3] for b, lvl in zip(buckets, levels, strict=True)]
            for (name, *_), lvl in zip(buckets, levels, strict=True):
                self._state[(key_id, name)] = (lvl, now)
        return _verdict(rpm, buckets, levels, wait)

    async def reserve(self, bucket: str, member: str, amount: int, ttl_s: float) -> int:
        """Hold `amount` units in `bucket` for up to `ttl_s`; the units now held there, this one included."""
        return (await self.reserve_many([(bucket, member, amount)], ttl_s))[0]

    async def reserve_many(self, holds: list[tuple[str, str, int]], ttl_s: float) -> list[int]:
        """`reserve` for each (bucket, member, amount), all in one step; the units held in each bucket."""
        with self._lock:
            now = self._clock()
            out = []
            for bucket, member, amount in holds:
                held = {m: (a, exp) for m, (a, exp) in self._held.get(bucket, {}).items() if exp > now}
                held[member] = (amount, now + ttl_s)
                self._held[bucket] = held
                out.append(sum(a for a, _ in held.values()))
            return out

    async def release(self, bucket: str, member: str, amount: int) -> None:
        with self._lock:
            held = self._held.get(bucket)
            if held is not None:
                held.pop(member, None)
                if not held:
                    del self._held[bucket]

    async def close(self) -> None:
        return None


def _verdict(rpm: int | None, buckets, levels, wait: float) -> Verdict:
    short = next((b[0] for b, lvl in zip(buckets, levels, strict=True) if lvl < b[3]), "") if wait else ""
    if not rpm:
        return Verdict(wait == 0, 0, 0, 0.0, wait, short)
    level = levels[0]
    return Verdict(wait == 0, rpm, max(0, math.floor(level)), (rpm - level) / (rpm / 60.0), wait, short)


# KEYS: one bucket key per limit; ARGV: capacity, refill per second, cost for each, in order.
# Time comes from the Redis server, so replicas with skewed clocks still share one bucket.
LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels, wait = {}, 0
for i = 1, #KEYS do
  local cap, rate, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local h = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level, at = tonumber(h[1]), tonumber(h[2])
  if level == nil then level, at = cap, now end
  level = math.min(cap, level + math.max(0, now - at) * rate)
  levels[i] = level
  if level < cost then wait = math.max(wait, (cost - level) / rate) end
end
local out = {wait > 0 and 0 or 1, tostring(wait)}
for i = 1, #KEYS do
  local cap, rate, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  if wait == 0 then levels[i] = levels[i] - cost end
  redis.call('HSET', KEYS[i], 'level', tostring(levels[i]), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(cap / rate * 1000) + 1000)
  out[#out + 1] = tostring(levels[i])
end
return out
"""


# Quota reservations: each KEYS[i] a sorted set of "id:units" members scored by expiry; ARGV[1]: ttl (s),
# ARGV[1 + i]: the member for KEYS[i]. For every key: drops expired members, adds this one, and returns the
# units held there, this one included; all keys in one step (a script runs alone).
RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(ttl * 1000) + 1000)
  local held = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    held = held + tonumber(string.match(m, ':(%d+)$'))
  end
  out[i] = held
end
return out
"""


Policy = Literal["open", "closed"]


class RedisLimiter:
    """Buckets in Redis, taken atomically by one Lua script; shared by every replica.

    `limits_when_down` (rpm/tpm) and `quotas_when_down` (quota and wallet holds): "open" goes on
    without Redis, "closed" raises `ServiceUnavailable` (503)."""

    def __init__(self, url: str, prefix: str = "modelshop", *, limits_when_down: Policy = "open",
                 quotas_when_down: Policy = "closed") -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1))  # one quick retry: a dropped connection
        self._script = self._redis.register_script(LUA)
        self._reserve = self._redis.register_script(RESERVE_LUA)
        self._prefix = prefix
        self.limits_when_down = limits_when_down
        self.quotas_when_down = quotas_when_down
        kw = self._redis.connection_pool.connection_kwargs
        self.where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"  # never the password
        self.down_since: float | None = None   # monotonic time the current outage was first seen

    def _unreachable(self, error: BaseException, policy: Policy, what: str) -> None:
        """Note a failed Redis call (one warning per outage); under "closed", refuse the call."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("Redis at %s is unreachable (%s: %s); until it is back, rate limits fail %s and quotas and "
                        "prepaid wallets fail %s", self.where, type(error).__name__, error,
                        self.limits_when_down, self.quotas_when_down)
        if policy == "closed":
            raise ServiceUnavailable(
                f"Redis at {self.where} is unreachable, so {what} cannot be checked and the call is refused; "
                f"retry in a few seconds", retry_after=OUTAGE_RETRY_AFTER_S) from None

    def _reachable(self) -> None:
        if self.down_since is not None:
            log.warning("Redis at %s is reachable again after %.1f s", self.where, time.monotonic() - self.down_since)
            self.down_since = None

    async def acquire(self, key_id: int, rpm: int | None, tpm: int | None, tokens: int) -> Verdict:
        buckets = _buckets(rpm, tpm, tokens)
        if not buckets:
            return Verdict(True, 0, 0, 0.0, 0.0)
        keys = [f"{self._prefix}:rl:{key_id}:{name}" for name, *_ in buckets]
        args = [str(v) for _, cap, per_s, cost in buckets for v in (cap, per_s, cost)]
        try:
            allowed, wait, *levels = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as e:
            self._unreachable(e, self.limits_when_down, "the key's rate limit")
            return Verdict(True, rpm or 0, rpm or 0, 0.0, 0.0)  # open: admitted without a limit
        self._reachable()
        return _verdict(rpm, buckets, [float(x) for x in levels], 0.0 if int(allowed) else float(wait))

    async def reserve(self, bucket: str, member: str, amount: int, ttl_s: float) -> int:
        """Hold `amount` units in `bucket` (shared by every replica) for up to `ttl_s`; the units held now."""
        return (await self.reserve_many([(bucket, member, amount)], ttl_s))[0]

    async def reserve_many(self, holds: list[tuple[str, str, int]], ttl_s: float) -> list[int]:
        """`reserve` for each (bucket, member, amount), all in one script; the units held in each bucket."""
        if not holds:
            return []
        try:
            held = await self._reserve(keys=[f"{self._prefix}:{bucket}" for bucket, _, _ in holds],
                                       args=[str(ttl_s), *(f"{member}:{amount}" for _, member, amount in holds)])
        except (RedisError, OSError) as e:
            self._unreachable(e, self.quotas_when_down, "the plan's quota or prepaid balance")
            return [amount for _, _, amount in holds]  # open: the ledger alone decides, without calls elsewhere
        self._reachable()
        return [int(h) for h in held]

    async def release(self, bucket: str, member: str, amount: int) -> None:
        """Never raises: a hold that cannot be given back expires by itself."""
        try:
            await self._redis.zrem(f"{self._prefix}:{bucket}", f"{member}:{amount}")
        except (RedisError, OSError) as e:
            self._unreachable(e, "open", "")
        else:
            self._reachable()

    async def health(self) -> str:
        """What /health reports, from a PING: "ok" or "unreachable"."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as e:
            self._unreachable(e, "open", "")
            return "unreachable"
        self._reachable()
        return "ok"

    async def close(self) -> None:
        await self._redis.aclose()


def make_limiter(settings: Settings, prefix: str | None = None) -> LocalLimiter | RedisLimiter:
    """The limiter these settings name: in Redis (with their fail-open/closed choices) or in-process."""
    if not settings.redis_url:
        return LocalLimiter()
    return RedisLimiter(settings.redis_url, prefix or settings.rate_limit_prefix,
                        limits_when_down=settings.rate_limits_when_redis_down,
                        quotas_when_down=settings.quotas_when_redis_down)
