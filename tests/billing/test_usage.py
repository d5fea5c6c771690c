"""The usage ledger's batch write: each record is metered, or found already metered under its
Idempotency-Key, or fails on its own error without failing the rest of its batch."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from modelshop.billing import usage
from modelshop.billing.accounts import create_customer
from modelshop.billing.keys import create_key
from modelshop.db import utcnow
from tests.support import ACTOR, make_plans


def test_an_integrity_error_other_than_the_key_is_an_error_not_already_metered(sqlite_db, plan_files):
    make_plans(sqlite_db, plan_files, "grad")
    customer = create_customer(sqlite_db, "Cy", "grad", actor=ACTOR)
    key_id = create_key(sqlite_db, customer["id"], actor=ACTOR)["id"]
    item = dict(customer_id=customer["id"], key_id=key_id, route="/predict", model="m:1", requests=1, tokens=1,
                characters=1, compute_us=1, occurred_at=utcnow())
    batch = [usage.Metered(request_id="a", idempotency_key="k1", **item),
             usage.Metered(request_id="b", idempotency_key="k2", **{**item, "key_id": 10**6}),  # no such key
             usage.Metered(request_id="c", idempotency_key="k1", **item)]
    results = usage.write_batch(sqlite_db, batch)
    assert results[0] is True and results[2] is False
    assert isinstance(results[1], IntegrityError)
