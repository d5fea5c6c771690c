"""Typed dependencies for every router: the app's state (set once by `create_app`) and who is calling.

    SettingsDep   the server's Settings          DbDep        its Database (the one the gate meters into)
    GateDep       its Gate                       ServiceDep   its Service (models, slots, metrics)
    ModelsDep     its PooledModels: the `Models` the apps run on (the pool's batchers, one copy of each model)
    PrincipalDep  any valid key                  AdminDep     an admin key (403 otherwise)
    CustomerDep   a customer key (403 otherwise) CallerDep    a metered call's caller: key, request id,
                                                              Idempotency-Key and the request's fingerprint

Partners authenticate with keys of their own (`channels.api.PartnerDep`, built on `DbDep`): the
channels package owns them, and this one imports nothing above it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelshop.db import Database, get_database
from modelshop.errors import Forbidden
from modelshop.gate import Gate, Principal
from modelshop.serve.pooled_models import PooledModels
from modelshop.serve.service import Service
from modelshop.settings import Settings

bearer = HTTPBearer(auto_error=False, description="your API key, sent as `Authorization: Bearer <key>`")


@dataclass
class AppState:
    """What a running app holds; `create_app` sets it once as `app.state.modelshop`."""

    settings: Settings
    gate: Gate
    service: Service
    models: PooledModels         # the apps' road to the models: the service's pool, never a copy of their own
    db: Database | None = None   # opened on first use when the composition root gave none

    def database(self) -> Database:
        if self.db is None:
            self.db = getattr(self.gate, "db", None) or get_database(self.settings)
        return self.db


def app_state(request: Request) -> AppState:
    return request.app.state.modelshop


def _settings(request: Request) -> Settings:
    return app_state(request).settings


def _db(request: Request) -> Database:
    return app_state(request).database()


def _gate(request: Request) -> Gate:
    return app_state(request).gate


def _service(request: Request) -> Service:
    return app_state(request).service


def _models(request: Request) -> PooledModels:
    return app_state(request).models


async def _principal(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    return await app_state(request).gate.authenticate(credentials.credentials if credentials else None)


async def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if principal.kind != "admin":
        raise Forbidden("this route needs an admin key")
    return principal


async def _customer(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if principal.kind != "customer" or principal.customer_id is None:
        raise Forbidden("this route needs a customer API key")
    return principal


@dataclass(frozen=True)
class Caller:
    principal: Principal
    request_id: str
    idempotency_key: str | None
    fingerprint: str = ""     # of the request, when it carries an Idempotency-Key


async def fingerprint(request: Request) -> str:
    """SHA-256 of what an Idempotency-Key names: method, path, query and body (JSON in canonical form,
    so the same object sent with other spacing or key order is the same request)."""
    body = await request.body()
    with contextlib.suppress(ValueError, UnicodeDecodeError):   # not JSON: the raw bytes are the request
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    h = hashlib.sha256(f"{request.method}\n{request.url.path}\n{query}\n".encode())
    h.update(body)
    return h.hexdigest()


async def _caller(
    request: Request,
    principal: Annotated[Principal, Depends(_principal)],
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="names one request: a retry with the same key gets the first reply and is metered once; "
                    "422 when the key named another request, 409 while the first is still under way"),
) -> Caller:
    return Caller(principal, request.state.request_id, idempotency_key,
                  await fingerprint(request) if idempotency_key else "")


SettingsDep = Annotated[Settings, Depends(_settings)]
DbDep = Annotated[Database, Depends(_db)]
GateDep = Annotated[Gate, Depends(_gate)]
ServiceDep = Annotated[Service, Depends(_service)]
ModelsDep = Annotated[PooledModels, Depends(_models)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
AdminDep = Annotated[Principal, Depends(_admin)]
CustomerDep = Annotated[Principal, Depends(_customer)]
CallerDep = Annotated[Caller, Depends(_caller)]
