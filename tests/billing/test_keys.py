"""API keys: a rotation under concurrency makes one replacement (the second of two never acts on the
first one's stale read: SQLite takes the writer lock before the first read, BEGIN IMMEDIATE in
`Database.write_session`; PostgreSQL locks the rows read). Keys through the routers: test_api.py; the
gate's cache of them: test_gate.py."""

from __future__ import annotations

from modelshop.billing.accounts import create_customer
from modelshop.billing.keys import create_key, list_keys, rotate_key
from modelshop.errors import ValidationError
from tests.billing.races import race
from tests.support import ACTOR, make_plans


def test_two_rotations_of_one_key_make_one_replacement(db, plan_files):
    make_plans(db, plan_files, "grad")
    customer = create_customer(db, "Rot", "grad", actor=ACTOR)
    key = create_key(db, customer["id"], actor=ACTOR)
    # both read the key as active; one rotates and commits; the other goes on from its read
    results = race(db.engine, "FROM billing_api_keys WHERE billing_api_keys.id =",
                   lambda: rotate_key(db, key["id"], actor=ACTOR), lambda: rotate_key(db, key["id"], actor=ACTOR))
    made = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(made) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], ValidationError) and f"key {key['id']} is revoked" in refused[0].message
    keys = list_keys(db, customer["id"])
    assert [(k["id"], k["status"]) for k in keys] == [(key["id"], "revoked"), (made[0]["id"], "active")]


