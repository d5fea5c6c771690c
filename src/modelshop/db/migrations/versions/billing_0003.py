"""billing: unique normalised customer e-mail

Revision ID: billing_0003
Revises: billing_0002
"""
import sqlalchemy as sa
from alembic import op

from modelshop.errors import Conflict

revision = "billing_0003"
down_revision = "billing_0002"
branch_labels = None
depends_on = None


def normalise(email: str | None) -> str | None:
    """The stored form of an e-mail (the same rule as `accounts.normalise_email`, frozen here)."""
    if email is None or not email.strip():
        return None
    return email.strip().lower()


def upgrade() -> None:
    # Normalised in Python, not with SQL lower(): SQLite's folds ASCII only, and the index must agree
    # with what the application writes from now on.
    conn = op.get_bind()
    customers = sa.table("billing_customers", sa.column("id", sa.Integer), sa.column("email", sa.String))
    rows = conn.execute(sa.select(customers.c.id, customers.c.email).where(customers.c.email.is_not(None))
                        .order_by(customers.c.id)).all()
    owners: dict[str, list[int]] = {}
    for cid, email in rows:
        if normalise(email) is not None:
            owners.setdefault(normalise(email), []).append(cid)
    shared = {e: ids for e, ids in owners.items() if len(ids) > 1}
    if shared:
        e, ids = next(iter(shared.items()))
        raise Conflict(
            f"billing_0003: customers {', '.join(map(str, ids))} share the e-mail {e} "
            f"({len(shared)} e-mail(s) in all are shared); give all but one of them another e-mail or none "
            f"(UPDATE billing_customers SET email = NULL WHERE id = {ids[-1]}) and start again")
    for cid, email in rows:
        if normalise(email) != email:
            conn.execute(customers.update().where(customers.c.id == cid).values(email=normalise(email)))
    op.create_index("uq_billing_customers_email", "billing_customers", ["email"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_billing_customers_email", table_name="billing_customers")
