"""Customers: one per e-mail, stored normalised (stripped, lower-case), a duplicate is a clear Conflict
(also when two sign-ups race), customers without an e-mail may be many; migration billing_0003 brings
existing rows to that rule."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from modelshop.billing.accounts import create_customer, list_customers
from modelshop.billing.tables import Customer
from modelshop.db import Database
from modelshop.db.migrate import upgrade
from modelshop.errors import Conflict, ValidationError
from tests.billing.races import race
from tests.support import ACTOR, make_plans


def test_email_is_normalised_and_unique(db, plan_files):
    make_plans(db, plan_files, "grad")
    ann = create_customer(db, "Ann", "grad", email="  Ann@Example.COM ", actor=ACTOR)
    assert ann["email"] == "ann@example.com"
    for variant in ("ann@example.com", "ANN@EXAMPLE.COM", " ann@Example.com\t"):
        with pytest.raises(Conflict) as e:
            create_customer(db, "Other", "grad", email=variant, actor=ACTOR)
        assert e.value.message == "a customer with e-mail ann@example.com already exists"
    for name in ("No mail 1", "No mail 2"):   # no e-mail (NULL) is not a duplicate
        assert create_customer(db, name, "grad", actor=ACTOR)["email"] is None
    with pytest.raises(ValidationError, match='email: "not-an-address" is not an e-mail address'):
        create_customer(db, "Bad", "grad", email=" Not-An-Address ", actor=ACTOR)
    assert [c["email"] for c in list_customers(db)] == ["ann@example.com", None, None]
    # the database says the same to a write that skips the library
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as c:
        c.execute(sa.text("insert into billing_customers (name, email, plan_id, status, created_at) "
                          "select 'Raw', 'ann@example.com', plan_id, status, created_at from billing_customers "
                          "where id = :i"), {"i": ann["id"]})


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated(request, tmp_path):
    """A database brought only as far as billing_0002 (before the unique e-mail)."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    upgrade(database.engine, "billing_0002")
    yield database
    database.dispose()


def _customers(db: Database, *emails: str | None) -> None:
    with db.engine.begin() as c:
        c.execute(sa.text("insert into billing_plans (code, version, currency, interval, spec, spec_sha256, "
                          "created_at) values ('p', 1, 'USD', 'month', '{}', 'x', '2026-01-01 00:00:00')"))
        for i, email in enumerate(emails):
            c.execute(sa.text("insert into billing_customers (name, email, plan_id, status, created_at) "
                              "values (:n, :e, 1, 'active', '2026-01-01 00:00:00')"), {"n": f"c{i}", "e": email})


def test_migration_normalises_existing_emails(unmigrated):
    _customers(unmigrated, " Ann@Example.com", "bob@x.io", None, None, "   ")
    unmigrated.migrate()
    with unmigrated.engine.connect() as c:
        rows = c.execute(sa.text("select email from billing_customers order by id")).scalars().all()
    assert rows == ["ann@example.com", "bob@x.io", None, None, None]


def test_migration_refuses_existing_shared_emails_with_the_fix(unmigrated):
    _customers(unmigrated, "ann@example.com", "bob@x.io", "ANN@example.com ")
    with pytest.raises(Conflict, match=r"customers 1, 3 share the e-mail ann@example.com .*"
                                       r"SET email = NULL WHERE id = 3\) and start again"):
        unmigrated.migrate()


def test_two_signups_with_one_email_make_one_customer(db, plan_files):
    make_plans(db, plan_files, "grad")
    # both find no customer with the e-mail; one creates it and commits; the other goes on to insert
    results = race(db.engine, "FROM billing_customers WHERE billing_customers.email =",
                   lambda: create_customer(db, "Ann", "grad", email="ann@example.com", actor=ACTOR),
                   lambda: create_customer(db, "Ann again", "grad", email="ann@example.com", actor=ACTOR))
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], Conflict)
    assert refused[0].message == "a customer with e-mail ann@example.com already exists"
    with db.session() as s:
        assert s.scalars(sa.select(Customer.email)).all() == ["ann@example.com"]
