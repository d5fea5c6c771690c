"""`BillingGate`: the `modelshop.gate.Gate` with customer keys, limits, quotas and the ledger.

    authenticate  key → Principal by SHA-256 lookup; revoked/expired → 401 with the reason
    metered       one `BillingMeter` per call, an async context manager:
      enter       claims the Idempotency-Key before inference: the stored reply of the same request
                  (not metered again), 422 for another request under the key, 409 while the first
                  call is still under way (see `usage.claim`)
      admit       scope → 403, rpm/tpm buckets → 429 (retry_after, limit, remaining, reset in the
                  error), plan quota or prepaid wallet → 402 (both also count the calls admitted and
                  not yet committed, on every replica sharing the Redis; a charge or quota that
                  names models counts only those models' units)
      record      the usage event (the units the call really used: a generative call's input and
                  output tokens, not the max_tokens admitted; `estimated` when the call's
                  `extra["estimated"]` says the units were counted locally because its upstream sent
                  no usage) and idempotency record, group-committed, durable before return; when the
                  key turns out to be used already, the stored reply to send instead
      exit        what `admit` held and a claim never recorded go back
    token_prices  what the caller's plan charges per million input and output tokens of a model

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

from modelshop.billing import keys as keystore
from modelshop.billing import usage, wallet
from modelshop.billing.accounts import generation, plan_spec
from modelshop.billing.committer import GroupCommitter
from modelshop.billing.limits import make_limiter
from modelshop.billing.money import fmt
from modelshop.billing.periods import months_of, parse_period, period_of
from modelshop.billing.plans import PlanSpec
from modelshop.billing.pricing import charge_for, charge_key, quota_used, token_prices, usage_charges_minor
from modelshop.billing.tables import Customer, Plan
from modelshop.db import Database, get_database, utcnow
from modelshop.errors import Forbidden, PayloadTooLarge, PaymentRequired, QuotaExceeded, RateLimited, Unauthorized
from modelshop.gate import Call, Meter, Principal, StoredReply, TokenPrices, Units, UnmeteredCall
from modelshop.settings import Settings

log = logging.getLogger(__name__)
_NO_MATCH = keystore.hash_key("no key has this hash")
QUOTA_HOLD_S = 60.0   # longest a call admitted under a blocking quota holds its units before it is committed
Hold = tuple[str, str, int]   # (limiter key, hold id, units) of a call admitted under a quota or wallet
ANY_MODEL = "*"               # usage of every model together, for a plan whose charges and quota name none


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

    # --- metered ------------------------------------------------------------------------------

    def metered(self, principal: Principal, route: str, *, idempotency_key: str | None = None,
                fingerprint: str = "", request_id: str = "") -> Meter:
        """One call's metering (an async context manager); an admin's calls are not metered."""
        if principal.kind != "customer":
            return UnmeteredCall()
        return BillingMeter(self, principal, route, usage.check_idempotency_key(idempotency_key), fingerprint,
                            request_id or uuid.uuid4().hex)

    async def claim(self, principal: Principal, key: str, route: str, fingerprint: str,
                    request_id: str) -> usage.Claim | StoredReply:
        """Take `key` for this call, or the stored reply of the same earlier request (see `usage.claim`)."""
        got = await asyncio.to_thread(
            usage.claim, self.db, principal.customer_id, key, route=route[:100], fingerprint=fingerprint,
            request_id=request_id[:64], now=self.clock(), ttl_s=self.settings.idempotency_claim_s)
        return got if isinstance(got, usage.Claim) else _stored(got)

    # --- admit -------------------------------------------------------------------------------

    async def admit(self, principal: Principal, model: str, units: Units) -> list[Hold]:
        """Scope, rate limits, then quota and wallet; the holds taken (give them back with `release`)."""
        if principal.kind != "customer":
            return []
        if principal.models is not None and model not in principal.models \
                and model.partition(":")[0] not in principal.models:
            raise Forbidden(f'this key may not call model "{model}"; it may call: {", ".join(principal.models)}')
        if principal.tpm and units.tokens > principal.tpm:
            raise PayloadTooLarge(f"this request has {units.tokens} tokens, more than the key's limit of "
                                  f"{principal.tpm} tokens per minute; send smaller requests")
        verdict = await self.limiter.acquire(principal.key_id, principal.rpm, principal.tpm, units.tokens)
        if not verdict.allowed:
            which, limit = ("requests", principal.rpm) if verdict.denied_by == "rpm" else ("tokens", principal.tpm)
            raise RateLimited(f"rate limit of {limit} {which} per minute reached; "
                              f"retry in {verdict.retry_after:.1f} s", retry_after=verdict.retry_after,
                              limit=verdict.limit, remaining=verdict.remaining, reset=verdict.reset)
        return await self._admit_plan(principal.customer_id, usage.model_name(model), units)

    async def release(self, holds: list[Hold]) -> None:
        for hold in holds:
            await self.limiter.release(*hold)

    async def _admit_plan(self, customer_id: int, model: str, units: Units) -> list[Hold]:
        """Quota of the plan period and, for prepaid plans, the wallet (402 with the reason).

        Both count the calls committed to the ledger *and* the calls admitted but not yet committed:
        each admitted call holds its units (in the limiter: in Redis when replicas share one) from
        before the ledger is read until its usage is committed (in `record`), so concurrent calls, on
        one replica or several, see one another and never both take the last unit of a quota or the
        last cents of a wallet. A call holds in one bucket per thing counted (`_buckets`): the
        blocking quota, and for a prepaid plan every charge (0 units in the charges its model's usage
        does not fall under, which reads what the others hold there), all in one step, so of two
        calls the later sees every hold of the earlier. A call that fails after admission gives its
        holds back when its meter closes, or when they expire (QUOTA_HOLD_S).
        """
        spec, period = await self._plan_of(customer_id)
        buckets = _buckets(spec, model, units)
        if not buckets and not spec.prepaid:
            return []
        holds: list[Hold] = [(f"held:{customer_id}:{period}:{bucket}", uuid.uuid4().hex, n)
                             for bucket, n in buckets.items()]
        try:
            totals = await self.limiter.reserve_many(holds, QUOTA_HOLD_S)
            held = dict(zip(buckets, totals, strict=True))
            await asyncio.to_thread(self._check_plan, customer_id, spec, period, model, buckets, held)
        except BaseException:
            await self.release(holds)
            raise
        return holds

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

    def _check_plan(self, customer_id: int, spec: PlanSpec, period: str, model: str, mine: dict[str, int],
                    held: dict[str, int]) -> None:
        """`mine`: this call's units per bucket; `held`: units per bucket admitted and not yet committed,
        this call's included."""
        busy = {b: max(0, n - mine[b]) for b, n in held.items()}   # the other calls under way
        with self.db.session() as s:
            used = _used(s, customer_id, spec, period)
            quota = spec.quota
            if quota is not None and _quota_blocks(quota, model):
                bucket, done = _quota_bucket(quota), quota_used(quota, used)
                if done + held[bucket] > quota.limit:
                    _, end, _ = parse_period(period)
                    more = f", {busy[bucket]:,} more in calls under way" if busy[bucket] else ""
                    of = f" of {', '.join(quota.models)}" if quota.models else ""
                    raise QuotaExceeded(
                        f"quota of {quota.limit:,} {quota.metric}{of} per {spec.interval} reached "
                        f"({done:,} used{more}); it resets at {end:%Y-%m-%dT%H:%M:%SZ}, "
                        "or move to a larger plan", limit=quota.limit, used=done, reset_at=end.isoformat())
            if spec.prepaid:
                # admitted only when the wallet covers what is spent, what the calls under way may spend,
                # and the most this call may cost (a generative call: its prompt + max_tokens): concurrent
                # calls never take a prepaid balance below zero
                balance = wallet.balance_minor(s, customer_id, spec.currency)
                spent = usage_charges_minor(spec, used, [busy.get(_charge_bucket(spec, i), 0)
                                                         for i in range(len(spec.charges))])
                at_most = usage_charges_minor(spec, used, [held.get(_charge_bucket(spec, i), 0)
                                                           for i in range(len(spec.charges))])
                if spent >= balance or at_most > balance:
                    left = fmt(balance - spent, spec.currency)
                    cost = "" if spent >= balance else \
                        f", and this call may cost up to {fmt(at_most - spent, spec.currency)} {spec.currency}"
                    tokens = any(b.startswith("output_tokens") and n for b, n in mine.items())
                    ask = " or ask for fewer max_tokens" if spent < balance and tokens else ""
                    raise PaymentRequired(
                        f"prepaid balance exhausted ({left} {spec.currency} left after this period's usage, calls "
                        f"under way included{cost}); top up the wallet{ask}", balance=left, currency=spec.currency)

    async def token_prices(self, principal: Principal, model: str) -> TokenPrices | None:
        """What the caller's plan charges per million input and output tokens of model `model` (NAME, or
        NAME:VERSION); None for a caller who is not a customer, or whose plan charges neither."""
        if principal.kind != "customer":
            return None
        spec, _ = await self._plan_of(principal.customer_id)
        return token_prices(spec, usage.model_name(model))

    # --- record ------------------------------------------------------------------------------

    async def record(self, principal: Principal, call: Call, reply: StoredReply) -> bool:
        """Write the call's usage (and its reply when it has an Idempotency-Key); returns once committed.

        True when this call is the one metered; False when its key was used meanwhile (the caller
        sends the stored reply). Any other failure to write raises: the call is not billed, and
        its client gets an error rather than an unmetered answer.
        """
        metered = usage.Metered(
            customer_id=principal.customer_id, key_id=principal.key_id, request_id=call.request_id[:64],
            route=call.route[:100], model=call.model[:200], requests=call.units.requests,
            tokens=call.units.tokens, characters=call.units.characters, input_tokens=call.units.input_tokens,
            output_tokens=call.units.output_tokens, compute_us=round(call.inference_seconds * 1_000_000),
            occurred_at=self.clock(), estimated=bool(call.extra.get("estimated")),
            idempotency_key=usage.check_idempotency_key(call.idempotency_key), status=reply.status,
            body=reply.body, headers=dict(reply.headers), fingerprint=call.fingerprint)
        result = await self.committer.submit(metered)
        if isinstance(result, Exception):
            log.error("usage of request %s not recorded", call.request_id, exc_info=result)
            raise result
        return result

    async def stored_reply(self, principal: Principal, key: str) -> StoredReply:
        return _stored(await asyncio.to_thread(usage.stored_reply, self.db, principal.customer_id, key))

    async def close(self) -> None:
        await self.committer.drain()
        await self.limiter.close()


class BillingMeter:
    """One customer call: claim on entry, admit once the units are known, record, give back on exit."""

    def __init__(self, gate: BillingGate, principal: Principal, route: str, key: str | None, fingerprint: str,
                 request_id: str) -> None:
        self.gate, self.principal, self.route = gate, principal, route
        self.key, self.fingerprint, self.request_id = key, fingerprint, request_id
        self.replay: StoredReply | None = None
        self._claim: usage.Claim | None = None
        self._holds: list[Hold] = []
        self._admitted = self._recorded = False

    async def __aenter__(self) -> BillingMeter:
        if self.key is not None:
            got = await self.gate.claim(self.principal, self.key, self.route, self.fingerprint, self.request_id)
            if isinstance(got, usage.Claim):
                self._claim = got
            else:
                self.replay = got
        return self

    async def admit(self, model: str, units: Units) -> None:
        self._holds += await self.gate.admit(self.principal, model, units)
        self._admitted = True

    async def record(self, call: Call, reply: StoredReply) -> StoredReply:
        call.idempotency_key, call.fingerprint = self.key, self.fingerprint or None
        try:
            fresh = await self.gate.record(self.principal, call, reply)
        finally:  # committed (or failed): the ledger now counts it (or it is not billed)
            await self._give_back()
        self._recorded = True
        self._claim = None                # the transaction that stored the reply deleted the claim
        return reply if fresh else await self.gate.stored_reply(self.principal, self.key)

    async def __aexit__(self, exc_type, exc, tb) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:             # a call that failed or never recorded: its key is free again
            await asyncio.to_thread(usage.release_claim, self.gate.db, claim)
        await self._give_back()
        if exc_type is None and self._admitted and not self._recorded:
            raise RuntimeError(f"{self.route}: a call was admitted but never recorded; a metered route must "
                               "record its reply before it returns")

    async def _give_back(self) -> None:
        holds, self._holds = self._holds, []
        await self.gate.release(holds)


def _quota_blocks(quota, model: str) -> bool:
    """Whether `quota` may refuse a call of model NAME `model`."""
    return quota.action == "block" and (quota.models is None or model in quota.models)


def _quota_bucket(quota) -> str:
    """A quota's hold bucket: its metric (as every quota's was before quotas could name models)."""
    return quota.metric if quota.models is None else f"{quota.metric}@{','.join(quota.models)}"


def _charge_bucket(spec: PlanSpec, index: int) -> str:
    """A charge's hold bucket: its metric for a charge that counts every model's units (the same bucket as
    a quota on that metric), else what it counts ("input_tokens@smollm2", "input_tokens@*" for the rest)."""
    charge = spec.charges[index]
    if charge.models is None and not any(c.metric == charge.metric and c.models for c in spec.charges):
        return charge.metric
    return charge_key(charge)


def _buckets(spec: PlanSpec, model: str, units: Units) -> dict[str, int]:
    """The buckets a call of `model` holds in, with its units in each (0 where its usage does not count)."""
    out: dict[str, int] = {}
    quota = spec.quota
    if quota is not None and _quota_blocks(quota, model):
        out[_quota_bucket(quota)] = getattr(units, quota.metric)
    if spec.prepaid:
        for i, charge in enumerate(spec.charges):
            bucket = _charge_bucket(spec, i)
            mine = getattr(units, charge.metric) if charge_for(spec, charge.metric, model) == i else 0
            out[bucket] = max(out.get(bucket, 0), mine)
    return dict(sorted(out.items()))


def _used(s, customer_id: int, spec: PlanSpec, period: str) -> dict[str, dict[str, int]]:
    """The committed usage of the period (`pricing.Usage`): per model NAME where the plan names models,
    else every model's together under ANY_MODEL (one counter row a month)."""
    months = months_of(period)
    if any(c.models for c in spec.charges) or (spec.quota is not None and spec.quota.models):
        return usage.model_month_totals(s, customer_id, months)
    return {ANY_MODEL: usage.month_totals(s, customer_id, months)}


def _stored(row) -> StoredReply:
    return StoredReply(status=row.status, body=row.body, headers=dict(row.headers))
