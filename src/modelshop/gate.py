"""The seam between serving and monetisation: who is calling, may they, and what it cost.

It sits below both `serve` and `billing`, so neither knows the other: `serve` asks a `Gate`,
`billing` provides one (`BillingGate`), and the composition root (`modelshop.platform`) hands the
one to the other. Every metered call is one `Meter`, opened with `gate.metered(...)`:

    principal = await gate.authenticate(token)                  # 401 Unauthorized
    async with gate.metered(principal, route, idempotency_key=..., fingerprint=..., request_id=...) as m:
        if m.replay is not None:                                # the same request answered before
            return m.replay
        await m.admit(model_ref, units)                         # 403 scope, 429 rate, 402 quota/wallet
        ... inference ...
        reply = await m.record(call, reply)                     # durable before the reply is sent
    # leaving the block gives back what was admitted but never recorded (a failed call, a client
    # that left) and the Idempotency-Key it claimed, so nothing stays held until it expires

Entering claims the call's Idempotency-Key before any work (409 while a call holding it is under
way, 422 when it named another request). `record` returns the reply to send: the given one, or the
stored reply of the first call when the key turned out to be used meanwhile. A route cannot skip a
step: the claim and the release are the block itself, admission happens where the units are known,
and leaving the block after an admission without a record is a programming error, raised.

`AdminKeyGate` (here) only knows the admin key and meters nothing.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Literal, Protocol

from modelshop.errors import Unauthorized
from modelshop.settings import Settings


@dataclass(frozen=True)
class Principal:
    kind: Literal["admin", "customer", "partner", "demo"]
    key_id: int | None = None
    customer_id: int | None = None
    models: tuple[str, ...] | None = None     # models this key may call; None: all
    rpm: int | None = None                    # requests per minute, None: no limit
    tpm: int | None = None                    # tokens per minute, None: no limit
    label: str = ""                           # display prefix of the key, for logs (never the key)


@dataclass(frozen=True)
class Units:
    requests: int = 1
    tokens: int = 0               # every token the model read or wrote (a generative call: input + output)
    characters: int = 0
    input_tokens: int = 0         # a generative call's prompt tokens, by the model's own tokenizer
    output_tokens: int = 0        # the tokens it generated


@dataclass(frozen=True)
class TokenPrices:
    """What a customer pays for a generative model, per million tokens (Decimal strings; None: not charged)."""

    currency: str
    input_per_million: str | None
    output_per_million: str | None


@dataclass
class Call:
    """One metered call, as recorded once it succeeded."""

    request_id: str
    route: str
    model: str                     # NAME:VERSION actually served
    units: Units
    idempotency_key: str | None = None
    inference_seconds: float = 0.0
    fingerprint: str | None = None  # SHA-256 of method, path, query and body: what the key names
    extra: dict = field(default_factory=dict)


@dataclass
class StoredReply:
    status: int
    body: bytes
    headers: dict[str, str]


class Meter(Protocol):
    """One metered call: an async context manager (see the module docstring)."""

    replay: StoredReply | None

    async def __aenter__(self) -> Meter: ...
    async def __aexit__(self, exc_type, exc, tb) -> None: ...
    async def admit(self, model: str, units: Units) -> None: ...
    async def record(self, call: Call, reply: StoredReply) -> StoredReply: ...


class Gate(Protocol):
    async def authenticate(self, token: str | None) -> Principal: ...

    def metered(self, principal: Principal, route: str, *, idempotency_key: str | None = None,
                fingerprint: str = "", request_id: str = "") -> Meter: ...

    async def token_prices(self, principal: Principal, model: str) -> TokenPrices | None:
        """The caller's prices for `model` (NAME), or None where its plan does not price tokens."""
        ...

    async def close(self) -> None: ...


class UnmeteredCall:
    """A `Meter` that admits everything and records nothing (the admin gate's, and an admin's calls)."""

    replay: StoredReply | None = None

    async def __aenter__(self) -> UnmeteredCall:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        return None

    async def admit(self, model: str, units: Units) -> None:
        return None

    async def record(self, call: Call, reply: StoredReply) -> StoredReply:
        return reply


class AdminKeyGate:
    """Only the admin key (`MODELSHOP_ADMIN_KEY`) gets in; nothing is metered."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = settings.admin_key.get_secret_value().encode() if settings.admin_key else None

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        if self._key is None or not hmac.compare_digest(token.encode(), self._key):
            raise Unauthorized("invalid API key")
        return Principal(kind="admin", label="admin")

    def metered(self, principal: Principal, route: str, *, idempotency_key: str | None = None,
                fingerprint: str = "", request_id: str = "") -> Meter:
        return UnmeteredCall()

    async def token_prices(self, principal: Principal, model: str) -> TokenPrices | None:
        return None

    async def close(self) -> None:
        return None
