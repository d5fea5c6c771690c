"""`BillingGate`: the `modelshop.serve.gate.Gate` with customer keys, limits, quotas and the ledger.

    authenticate  key → Principal by SHA-256 lookup; revoked/expired → 401 with the reason
    claim         an Idempotency-Key is taken before inference: the stored reply of the same request
                  (not metered again), 422 for another request under the key, 409 while the first
                  call is still under way (see `usage.claim`)
    admit         scope → 403, rpm/tpm buckets → 429 (retry_after + RateLimit data in `extra`),
                  plan quota or prepaid wallet → 402 (both also count the calls admitted and not
                  yet committed, on every replica sharing the Redis)
    record        the usage event and idempotency record, group-committed, durable before return;
                  when the key turns out to be used already, the stored reply to send instead
    settle        at every request's end: what `admit` held and a claim never recorded go back

Database calls run in worker threads so the event loop keeps serving. No key is ever logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from modelshop.billing import keys as keystore
from modelshop.billing import usage, wallet
from modelshop.billing.accounts import generation, plan_spec
from modelshop.billing.committer import GroupCommitter
from modelshop.billing.limits import Verdict, make_limiter, ratelimit_headers
from modelshop.billing.money import fmt
from modelshop.billing.periods import months_of, parse_period, period_of
from modelshop.billing.plans import PlanSpec
from modelshop.billing.pricing import usage_charges_minor
from modelshop.billing.tables import Customer, Plan
from modelshop.db import Database, get_database, utcnow
from modelshop.errors import (Forbidden, PayloadTooLarge, PaymentRequired, QuotaExceeded, RateLimited,
                              Unauthorized)
from modelshop.serve.gate import Call, Principal, StoredReply, Units
from modelshop.settings import Settings

log = logging.getLogger(__name__)
_NO_MATCH = keystore.hash_key("no key has this hash")
QUOTA_HOLD_S = 60.0   # longest a call admitted under a blocking quota holds its units before it is committed
# quota holds taken by `admit` in this request, given back by `record` once the usage is committed
_holds: ContextVar[tuple[tuple[str, str, int], ...]] = ContextVar("modelshop_quota_holds", default=())
# the Idempotency-Key claimed by this request, released by `settle` unless `record` stored its reply
_claim: ContextVar[usage.Claim | None] = ContextVar("modelshop_idempotency_claim", default=None)


class BillingGate:
    """The metering gate. One per server process; replicas share the database (and Redis when set)."""

    def __init__(self, settings: Settings, db: Database | None = None, *,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.settings = settings
        self.db = db or get_database(settings)
        self.clock = clock
        self._admin_key = settings.admin_key.get_secret_value().encode() if settings.admin_key else None
        self.limiter = make_limiter(settings)   # Redis when set, failing open or closed as the settings say
        self.committer: GroupCommitter[usage.Metered, bool | Exception] = GroupCommitter(
            lambda batch: usage.write_batch(self.db, batch),
            settings.billing_group_commit_ms / 1000.0, settings.billing_group_commit_max)
        self._limits: dict[int, tuple[Verdict, float]] = {}
        self._plan_ids: dict[int, int] = {}         # customer → plan version, as of its last authentication
        self._specs: dict[int, PlanSpec] = {}       # plan version → spec (a stored version never changes)
        self._keys: dict[str, tuple[object, float, int]] = {}  # digest → (key row, read at, generation)

    # --- authenticate ------------------------------------------------------------------------

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        if self._admin_key is not None and hmac.compare_digest(token.encode(), self._admin_key):
            return Principal(kind="admin", label="admin")
        digest = keystore.hash_key(token)
        key = await self._lookup(token, digest)
        # compare the digests in constant time even when the lookup found nothing
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            hmac.compare_digest(_NO_MATCH, digest)
            log.info("authentication failed: unknown key")
            raise Unauthorized("invalid API key")
        now = self.clock()
        if key.status == "revoked":
            log.info("authentication failed: key %s… revoked", key.prefix)
            raise Unauthorized(f"API key {key.prefix}… was revoked at {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}; "
                               "use a current key")
        if key.expires_at is not None and key.expires_at <= now:
            log.info("authentication failed: key %s… expired", key.prefix)
            raise Unauthorized(f"API key {key.prefix}… expired at {key.expires_at:%Y-%m-%dT%H:%M:%SZ}; "
                               "create a new key")
        if key.kind == "admin":
            return Principal(kind="admin", key_id=key.id, label=key.prefix)
        if key.customer_status != "active":
            raise Forbidden(f"customer account {key.customer_id} is suspended; contact support")
        self._plan_ids[key.customer_id] = key.plan_id   # read fresh by every authentication
        return Principal(kind="customer", key_id=key.id, customer_id=key.customer_id,
                         models=tuple(key.models) if key.models else None, rpm=key.rpm, tpm=key.tpm,
                         label=key.prefix)

    async def _lookup(self, token: str, digest: str):
        """The key's row, read at most every `key_cache_s` per key (at once after a change here)."""
        ttl = self.settings.key_cache_s
        hit = self._keys.get(digest)
        if hit is not None and time.monotonic() - hit[1] < ttl and hit[2] == generation():
            return hit[0]
        seen = generation()
        key = await asyncio.to_thread(keystore.lookup_secret, self.db, token)
        if key is not None and ttl > 0:  # unknown keys are never cached: each try reads the database
            if len(self._keys) >= 10_000:
                self._keys.clear()
            self._keys[digest] = (key, time.monotonic(), seen)
        return key

    # --- claim -------------------------------------------------------------------------------

    async def claim(self, principal: Principal, idempotency_key: str | None, route: str, fingerprint: str,
                    request_id: str) -> StoredReply | None:
        key = usage.check_idempotency_key(idempotency_key)
        if key is None or principal.customer_id is None:
            return None
        got = await asyncio.to_thread(
            usage.claim, self.db, principal.customer_id, key, route=route[:100], fingerprint=fingerprint,
            request_id=request_id[:64], now=self.clock(), ttl_s=self.settings.idempotency_claim_s)
        if isinstance(got, usage.Claim):
            _claim.set(got)
            return None
        return _stored(got)

    # --- admit -------------------------------------------------------------------------------

    async def admit(self, principal: Principal, model: str, units: Units) -> None:
        if principal.kind != "customer":
            return
        if principal.models is not None and model not in principal.models \
                and model.partition(":")[0] not in principal.models:
            raise Forbidden(f'this key may not call model "{model}"; it may call: {", ".join(principal.models)}')
        if principal.tpm and units.tokens > principal.tpm:
            raise PayloadTooLarge(f"this request has {units.tokens} tokens, more than the key's limit of "
                                  f"{principal.tpm} tokens per minute; send smaller requests")
        verdict = await self.limiter.acquire(principal.key_id, principal.rpm, principal.tpm, units.tokens)
        if principal.rpm:
            self._limits[principal.key_id] = (verdict, time.monotonic())
        if not verdict.allowed:
            which, limit = ("requests", principal.rpm) if verdict.denied_by == "rpm" else ("tokens", principal.tpm)
            raise RateLimited(f"rate limit of {limit} {which} per minute reached; "
                              f"retry in {verdict.retry_after:.1f} s", retry_after=verdict.retry_after,
                              limit=verdict.limit, remaining=verdict.remaining, reset=verdict.reset,
                              headers=ratelimit_headers(
                                  {"limit": verdict.limit, "remaining": verdict.remaining, "reset": verdict.reset}))
        await self._admit_plan(principal.customer_id, units)

    async def _admit_plan(self, customer_id: int, units: Units) -> None:
        """Quota of the plan period and, for prepaid plans, the wallet (402 with the reason).

        Both count the calls committed to the ledger *and* the calls admitted but not yet committed:
        each admitted call holds its units (per metric, in the limiter: in Redis when replicas share
        one) from before the ledger is read until its usage is committed (in `record`), so concurrent
        calls, on one replica or several, see one another and never both take the last unit of a
        quota or the last cents of a wallet. A call that fails after admission gives its hold back
        at the end of its request (`settle`), or when the hold expires (QUOTA_HOLD_S).
        """
        spec, period = await self._plan_of(customer_id)
        metrics = set()
        if spec.quota is not None and spec.quota.action == "block":
            metrics.add(spec.quota.metric)
        if spec.prepaid:
            metrics.update(c.metric for c in spec.charges)
        if not metrics and not spec.prepaid:
            return
        holds: list[tuple[str, str, int]] = []
        held: dict[str, int] = {}
        try:
            for metric in sorted(metrics):
                hold = (f"held:{customer_id}:{period}:{metric}", uuid.uuid4().hex, getattr(units, metric))
                held[metric] = await self.limiter.reserve(*hold, QUOTA_HOLD_S)
                holds.append(hold)
            await asyncio.to_thread(self._check_plan, customer_id, spec, period, units, held)
        except BaseException:
            for hold in holds:
                await self.limiter.release(*hold)
            raise
        _holds.set((*_holds.get(), *holds))

    async def _plan_of(self, customer_id: int) -> tuple[PlanSpec, str]:
        """The customer's plan spec (no database read once its version is known) and current period."""
        spec = self._specs.get(self._plan_ids.get(customer_id, -1))
        if spec is None:
            plan_id, spec = await asyncio.to_thread(self._load_plan, customer_id)
            self._specs[plan_id] = spec
        return spec, period_of(self.clock(), spec.interval)

    def _load_plan(self, customer_id: int) -> tuple[int, PlanSpec]:
        with self.db.session() as s:
            customer = s.get(Customer, customer_id)
            return customer.plan_id, plan_spec(s.get(Plan, customer.plan_id))

    def _check_plan(self, customer_id: int, spec: PlanSpec, period: str, units: Units,
                    held: dict[str, int]) -> None:
        """`held`: units per metric admitted and not yet committed, this call's included."""
        with self.db.session() as s:
            used = usage.month_totals(s, customer_id, months_of(period))
            # units of the other calls under way (admitted, not yet in the ledger)
            busy = {m: max(0, n - getattr(units, m)) for m, n in held.items()}
            if spec.quota is not None and spec.quota.action == "block":
                metric = spec.quota.metric
                if used[metric] + held[metric] > spec.quota.limit:
                    _, end, _ = parse_period(period)
                    more = f", {busy[metric]:,} more in calls under way" if busy[metric] else ""
                    raise QuotaExceeded(
                        f"quota of {spec.quota.limit:,} {metric} per {spec.interval} reached "
                        f"({used[metric]:,} used{more}); it resets at {end:%Y-%m-%dT%H:%M:%SZ}, "
                        "or move to a larger plan", limit=spec.quota.limit, used=used[metric],
                        reset_at=end.isoformat())
            if spec.prepaid:
                balance = wallet.balance_minor(s, customer_id, spec.currency)
                spent = usage_charges_minor(spec, {m: n + busy.get(m, 0) for m, n in used.items()})
                if spent >= balance:
                    raise PaymentRequired(
                        f"prepaid balance exhausted ({fmt(balance - spent, spec.currency)} {spec.currency} "
                        "left after this period's usage, calls under way included); top up the wallet",
                        balance=fmt(balance - spent, spec.currency), currency=spec.currency)

    def rate_limit(self, principal: Principal) -> dict | None:
        """RateLimit-Limit/Remaining/Reset of the key's last admitted call, for response headers."""
        entry = self._limits.get(principal.key_id) if principal.key_id is not None else None
        if entry is None:
            return None
        verdict, at = entry
        return {"limit": verdict.limit, "remaining": verdict.remaining,
                "reset": max(0.0, verdict.reset - (time.monotonic() - at))}

    # --- record ------------------------------------------------------------------------------

    async def record(self, principal: Principal, call: Call, reply: StoredReply) -> StoredReply | None:
        """Write the call's usage (and its reply when it has an Idempotency-Key); returns once committed.

        Returns None when this reply is the one metered, or the stored reply of the first call when
        the key was used meanwhile (the caller sends that one, never its fresh reply).
        """
        if principal.kind != "customer":
            return None
        key = usage.check_idempotency_key(call.idempotency_key)
        metered = usage.Metered(
            customer_id=principal.customer_id, key_id=principal.key_id, request_id=call.request_id[:64],
            route=call.route[:100], model=call.model[:200], requests=call.units.requests,
            tokens=call.units.tokens, characters=call.units.characters,
            compute_us=round(call.inference_seconds * 1_000_000), occurred_at=self.clock(),
            idempotency_key=key, status=reply.status, body=reply.body, headers=dict(reply.headers),
            fingerprint=call.fingerprint)
        try:
            result = await self.committer.submit(metered)
            if isinstance(result, Exception):
                log.error("usage of request %s not recorded", call.request_id, exc_info=result)
                raise result
            if key is not None:
                _claim.set(None)              # the transaction that stored the reply deleted the claim
            if result is False:
                first = await asyncio.to_thread(usage.stored_reply, self.db, principal.customer_id, key)
                return _stored(first)
            return None
        finally:  # committed (or failed): the ledger now counts it (or it is not billed)
            await self.settle()

    async def settle(self) -> None:
        """Give back what `admit` held in this request: after `record`, and at the end of every request
        for a call never recorded (it failed after admission, or its client left), so it does not
        block the quota until it expires."""
        held = _claim.get()
        if held is not None:
            _claim.set(None)
            await asyncio.to_thread(usage.release_claim, self.db, held)
        holds = _holds.get()
        if holds:
            _holds.set(())
            for hold in holds:
                await self.limiter.release(*hold)

    async def close(self) -> None:
        await self.committer.drain()
        await self.limiter.close()


def _stored(row) -> StoredReply:
    return StoredReply(status=row.status, body=row.body, headers=dict(row.headers))


def make_gate(settings: Settings, db: Database | None = None) -> BillingGate:
    """The gate `modelshop serve` uses when `serve_gate` is "billing"."""
    return BillingGate(settings, db)
