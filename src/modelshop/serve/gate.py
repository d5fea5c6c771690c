"""The seam between serving and monetisation: who is calling, may they, and what it cost.

Every metered route goes through one `Gate`:

    principal = await gate.authenticate(token)                 # 401 Unauthorized
    stored = await gate.claim(principal, idempotency_key, route, fingerprint, request_id)
                                                               # the key taken before any work: a retried
                                                               # request gets its stored reply; 409 while
                                                               # the first is under way, 422 for another
    await gate.admit(principal, model_ref, units)              # 403 scope, 429 rate, 402 quota/wallet
    ... inference ...
    stored = await gate.record(principal, call, reply)         # durable before the reply is sent; a key
                                                               # used meanwhile: send `stored` instead
    await gate.settle()                                        # every request's end: free what was not recorded

`AdminKeyGate` (here) only knows the admin key; `modelshop.billing` provides the gate with
customer keys, limits, quotas and the usage ledger. Routes never know which one they have.
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
    tokens: int = 0
    characters: int = 0


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


class Gate(Protocol):
    async def authenticate(self, token: str | None) -> Principal: ...
    async def claim(self, principal: Principal, idempotency_key: str | None, route: str, fingerprint: str,
                    request_id: str) -> StoredReply | None: ...
    async def admit(self, principal: Principal, model: str, units: Units) -> None: ...
    async def record(self, principal: Principal, call: Call, reply: StoredReply) -> StoredReply | None: ...
    async def settle(self) -> None: ...
    async def close(self) -> None: ...


class AdminKeyGate:
    """Only the admin key (`MODELSHOP_ADMIN_KEY`) gets in; nothing is metered."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.admin_key.get_secret_value().encode() if settings.admin_key else None

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        if self._key is None or not hmac.compare_digest(token.encode(), self._key):
            raise Unauthorized("invalid API key")
        return Principal(kind="admin", label="admin")

    async def claim(self, principal: Principal, idempotency_key: str | None, route: str, fingerprint: str,
                    request_id: str) -> StoredReply | None:
        return None

    async def admit(self, principal: Principal, model: str, units: Units) -> None:
        return None

    async def record(self, principal: Principal, call: Call, reply: StoredReply) -> StoredReply | None:
        return None

    async def settle(self) -> None:
        return None

    async def close(self) -> None:
        return None
