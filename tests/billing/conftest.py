"""Billing fixtures: a migrated database on SQLite or PostgreSQL, plans written as real files."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from modelshop.billing.accounts import create_plan
from modelshop.billing.plans import load_plan_file
from modelshop.db import Database
from modelshop.errors import ModelshopError
from modelshop.gate import Call, StoredReply, Units

ADMIN = "test"  # the actor of library calls made by tests

PLANS = {
    # graduated, with free units and a base fee: a subscription with included units and overage
    "grad": """
code: grad
currency: USD
interval: month
base_fee: "10.00"
charges:
  - metric: requests
    model: graduated
    free_units: 50
    tiers:
      - {up_to: 100, unit_price: "0.05003"}
      - {up_to: null, unit_price: "0.020012"}
""",
    "vol": """
code: vol
currency: USD
charges:
  - metric: tokens
    model: volume
    tiers:
      - {up_to: 1000, unit_price: "0.001"}
      - {up_to: 5000, unit_price: "0.00087"}
      - {up_to: null, unit_price: "0.0005"}
""",
    "pack": """
code: pack
currency: USD
charges:
  - metric: characters
    model: package
    free_units: 5000
    package_size: 1000
    package_price: "0.75"
""",
    "free": """
code: free
currency: USD
quota: {metric: requests, limit: 5, action: block}
""",
    "prepaid": """
code: prepaid
currency: USD
prepaid: true
charges:
  - {metric: requests, model: unit, unit_price: "0.40"}
""",
}


@pytest.fixture
def plan_files(tmp_path):
    """Each plan of PLANS as a YAML file."""
    paths = {}
    for code, text in PLANS.items():
        paths[code] = tmp_path / f"{code}.yaml"
        paths[code].write_text(text)
    return paths


def make_plans(db: Database, plan_files, *codes: str) -> None:
    for code in codes:
        create_plan(db, load_plan_file(plan_files[code]), actor=ADMIN)


async def serve_call(gate, token: str | None, model: str = "minilm:1", units: Units = Units(),
                     idempotency_key: str | None = None, route: str = "/predict", body: str = "body-0",
                     infer=None):
    """One request handled the way the server handles it: authenticate, then one metered block (the key
    claimed → admit → (infer) → record; what was held given back on leaving). `body` stands for the
    request's fingerprint (same body: same request).

    Returns ("ok" | "replayed", StoredReply) or (status code, error).
    """
    request_id = uuid.uuid4().hex
    try:
        principal = await gate.authenticate(token)
        async with gate.metered(principal, route, idempotency_key=idempotency_key, fingerprint=body,
                                request_id=request_id) as m:
            if m.replay is not None:
                return "replayed", m.replay
            await m.admit(model, units)
            if infer is not None:
                await infer()
            reply = StoredReply(200, json.dumps({"request_id": request_id, "tokens": units.tokens}).encode(),
                                {"x-request-id": request_id, "content-type": "application/json"})
            sent = await m.record(Call(request_id, route, model, units, inference_seconds=0.0125), reply)
            return ("ok" if sent is reply else "replayed"), sent
    except ModelshopError as e:
        return e.status_code, e


async def gather_in_chunks(coros, size: int = 50) -> list:
    out = []
    for i in range(0, len(coros), size):
        out.extend(await asyncio.gather(*coros[i:i + size]))
    return out
