"""The commission scenario, computed by hand: 10 %/15 % by monthly volume for 3 months, a 25.00 bounty,
a tier change inside a month, a void after payout clawed back by negative entries, and payout netting.

Plans: pro 60.00/month, biz 80.00/month. Tiers: 10 % below a partner volume of 100.00 a month, 15 % from it.

    month  invoices paid          volume  rate   commissions
    M0     Ann 60                 60      10 %   Ann 6.00 + bounty 25.00
    M1     Ann 60, then Ben 80    140     15 %   Ann 6.00 (at 10 %, before Ben paid) + 3.00 adjustment,
                                                 Ben 12.00 + bounty 25.00
    M2     Ann 60, Ben 80         140     15 %   Ann 9.00, Ben 12.00
    M3     Ann 60, Ben 80         140     15 %   Ann none (past her 3 months), Ben 12.00
    first statement: 6 + 25 + 6 + 3 + 12 + 25 + 9 + 12 + 12 = 110.00
    Ann's M2 invoice voided: clawback -9.00; M2 volume falls to 80 → Ben's M2 at 10 %: adjustment -4.00
    M4     Cid 60 (bound in M3)   60      10 %   Cid 6.00 + bounty 25.00
    second statement: -9.00 - 4.00 + 6.00 + 25.00 = 18.00
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from modelshop.billing import accounts, invoices
from modelshop.channels import attribution, commissions, partners
from modelshop.channels.tables import Commission
from modelshop.db import utcnow
from modelshop.errors import Conflict, ValidationError
from tests.support import ACTOR, make_plan, month_start, period


def bill(db, customer_id: int, offset: int, pay: bool = True) -> int:
    run = invoices.run_invoices(db, period(offset), customer_id=customer_id, actor=ACTOR)
    inv = run["invoices"][0]["id"]
    invoices.finalize(db, inv, actor=ACTOR, now=month_start(offset + 1))
    if pay:
        invoices.pay(db, inv, actor=ACTOR)
    return inv


def amounts(db, partner_id: int) -> list[tuple]:
    rows = commissions.list_commissions(db, partner_id=partner_id)["entries"]
    return [(e["customer"], e["period"], e["kind"], e["entry"], e["rate_percent"], e["amount"]) for e in rows]


def test_commission_scenario(db, settings):
    make_plan(db, "pro", base_fee="60.00")
    make_plan(db, "biz", base_fee="80.00")
    acme = partners.create_partner(db, "Acme Media", kind="affiliate", actor=ACTOR)
    code = acme["channel"]["code"]
    commissions.create_rule(db, acme["id"], "percent", tiers="0:10,100:15", months=3, hold_days=30, actor=ACTOR)
    commissions.create_rule(db, acme["id"], "bounty", bounty="25.00", hold_days=30, actor=ACTOR)

    def customer(name: str, plan: str, bound_offset: int) -> int:
        cid = accounts.create_customer(db, name, plan, actor=ACTOR)["id"]
        attribution.bind_customer(db, settings, cid, params={"ref": code},
                                  now=month_start(bound_offset) + dt.timedelta(days=1))
        return cid

    ann, ben = customer("Ann", "pro", 0), customer("Ben", "biz", 1)
    run = lambda **kw: commissions.run_commissions(db, actor=ACTOR, **kw)  # noqa: E731

    bill(db, ann, 0)
    assert run() == {"accrual": 2, "adjustment": 0, "clawback": 0, "approved": 0}
    bill(db, ann, 1)
    run()
    bill(db, ben, 1)
    assert run() == {"accrual": 2, "adjustment": 1, "clawback": 0, "approved": 0}
    ann_m2 = bill(db, ann, 2)
    bill(db, ben, 2)
    bill(db, ann, 3)
    bill(db, ben, 3)
    assert run() == {"accrual": 3, "adjustment": 0, "clawback": 0, "approved": 0}
    assert run() == {"accrual": 0, "adjustment": 0, "clawback": 0, "approved": 0}  # idempotent

    m = [period(i) for i in range(5)]
    assert amounts(db, acme["id"]) == [
        ("Ann", m[0], "percent", "accrual", "10.00", "6.00"), ("Ann", m[0], "bounty", "accrual", None, "25.00"),
        ("Ann", m[1], "percent", "accrual", "10.00", "6.00"),
        ("Ann", m[1], "percent", "adjustment", "15.00", "3.00"), ("Ben", m[1], "percent", "accrual", "15.00", "12.00"),
        ("Ben", m[1], "bounty", "accrual", None, "25.00"),
        ("Ann", m[2], "percent", "accrual", "15.00", "9.00"), ("Ben", m[2], "percent", "accrual", "15.00", "12.00"),
        ("Ben", m[3], "percent", "accrual", "15.00", "12.00")]
    listing = commissions.list_commissions(db, partner_id=acme["id"])
    assert listing["totals"]["USD"] == {"pending": "110.00", "approved": "0.00", "paid": "0.00"}

    # the hold: nothing is approved before 30 days have passed since payment
    later = utcnow() + dt.timedelta(days=31)
    assert run(now=later)["approved"] == 9
    first_month = later.strftime("%Y-%m")
    st = commissions.payout(db, acme["id"], first_month, actor=ACTOR)
    assert st["total"] == "110.00" and len(st["entries"]) == 9
    assert commissions.payout(db, acme["id"], first_month, actor=ACTOR)["id"] == st["id"]  # made once
    csv_text = commissions.statement_csv(st)
    assert csv_text.splitlines()[0].startswith("entry_id,customer_id,customer")
    assert csv_text.splitlines()[-1] == f"total,,,,{first_month},,,,,110.00,USD"
    paid_before = [(e["id"], e["amount"], e["status"]) for e in commissions.list_commissions(
        db, partner_id=acme["id"])["entries"]]

    # a void after payout: new negative entries, the paid ones untouched
    invoices.void(db, ann_m2, reason="refund requested", actor=ACTOR)
    assert run(now=later + dt.timedelta(days=1)) == {"accrual": 0, "adjustment": 1, "clawback": 1, "approved": 2}
    after = commissions.list_commissions(db, partner_id=acme["id"])
    assert [(e["id"], e["amount"], e["status"]) for e in after["entries"][:9]] == paid_before
    assert [(e["customer"], e["period"], e["entry"], e["rate_percent"], e["amount"], e["status"])
            for e in after["entries"][9:]] == [("Ann", m[2], "clawback", "15.00", "-9.00", "approved"),
                                               ("Ben", m[2], "adjustment", "10.00", "-4.00", "approved")]
    next_month = (later + dt.timedelta(days=32)).strftime("%Y-%m")
    with pytest.raises(ValidationError, match=r"net -13\.00 USD; a negative balance is carried"):
        commissions.payout(db, acme["id"], next_month, actor=ACTOR)

    # a later customer's earnings are netted against the clawbacks in the next statement
    cid = customer("Cid", "pro", 3)
    bill(db, cid, 4)
    assert run() == {"accrual": 2, "adjustment": 0, "clawback": 0, "approved": 0}
    assert run(now=later + dt.timedelta(days=40))["approved"] == 2
    st2 = commissions.payout(db, acme["id"], (later + dt.timedelta(days=40)).strftime("%Y-%m"), actor=ACTOR)
    assert st2["total"] == "18.00"
    assert sorted(e["amount"] for e in st2["entries"]) == ["-4.00", "-9.00", "25.00", "6.00"]
    assert [e["period"] for e in st2["entries"] if e["customer"] == "Cid"] == [m[4], m[4]]


def test_a_paid_commission_never_changes(db, settings):
    make_plan(db, "pro", base_fee="60.00")
    acme = partners.create_partner(db, "Acme", actor=ACTOR)
    commissions.create_rule(db, acme["id"], "percent", percent="20", hold_days=0, actor=ACTOR)
    cid = accounts.create_customer(db, "Ann", "pro", actor=ACTOR)["id"]
    attribution.bind_customer(db, settings, cid, params={"ref": acme["channel"]["code"]})
    bill(db, cid, 0)
    assert commissions.run_commissions(db, actor=ACTOR)["approved"] == 1
    commissions.payout(db, acme["id"], utcnow().strftime("%Y-%m"), actor=ACTOR)
    with pytest.raises(Conflict, match="is paid and never changes"), db.session() as s:
        s.scalars(select(Commission)).one().status = "approved"
    with pytest.raises(Conflict, match="never changes \\(amount_minor\\)"), db.session() as s:
        s.scalars(select(Commission)).one().amount_minor = 1
    with pytest.raises(Conflict, match="never deleted"), db.session() as s:
        s.delete(s.scalars(select(Commission)).one())
    assert commissions.list_commissions(db, partner_id=acme["id"])["totals"]["USD"]["paid"] == "12.00"


def test_a_void_inside_the_hold_nets_to_zero_before_anything_is_approved(db, settings):
    make_plan(db, "pro", base_fee="60.00")
    acme = partners.create_partner(db, "Acme", actor=ACTOR)
    commissions.create_rule(db, acme["id"], "percent", percent="10", hold_days=30, actor=ACTOR)
    commissions.create_rule(db, acme["id"], "bounty", bounty="25.00", hold_days=30, actor=ACTOR)
    cid = accounts.create_customer(db, "Ann", "pro", actor=ACTOR)["id"]
    attribution.bind_customer(db, settings, cid, params={"ref": acme["channel"]["code"]})
    inv = bill(db, cid, 0)
    assert commissions.run_commissions(db, actor=ACTOR)["accrual"] == 2
    invoices.void(db, inv, reason="chargeback", actor=ACTOR)
    assert commissions.run_commissions(db, actor=ACTOR) == {"accrual": 0, "adjustment": 0, "clawback": 2, "approved": 0}
    entries = commissions.list_commissions(db, partner_id=acme["id"])["entries"]
    assert [(e["entry"], e["amount"], e["status"]) for e in entries] == [
        ("accrual", "6.00", "pending"), ("accrual", "25.00", "pending"),
        ("clawback", "-6.00", "pending"), ("clawback", "-25.00", "pending")]
    assert len({e["hold_until"] for e in entries}) == 1  # the reversals wait exactly as long as what they reverse
    assert commissions.run_commissions(db, actor=ACTOR, now=utcnow() + dt.timedelta(days=31))["approved"] == 4
    with pytest.raises(ValidationError, match="net 0.00 USD"):
        commissions.payout(db, acme["id"], (utcnow() + dt.timedelta(days=31)).strftime("%Y-%m"), actor=ACTOR)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "percent"}, "either percent .* or tiers"),
    ({"kind": "percent", "percent": "10", "tiers": "0:10"}, "either percent"),
    ({"kind": "percent", "tiers": "5:10"}, "first tier must start at a volume of 0"),
    ({"kind": "percent", "tiers": "0:10,0:12"}, "higher volume"),
    ({"kind": "percent", "percent": "101"}, "percentage from 0 to 100"),
    ({"kind": "percent", "percent": 10.5}, "float"),
    ({"kind": "percent", "percent": "10", "months": 0}, "months: expected a whole number"),
    ({"kind": "bounty", "bounty": "0.001"}, "more than 2 decimal places"),
    ({"kind": "bounty", "bounty": "5", "months": 3}, "only bounty"),
    ({"kind": "bonus"}, 'kind: "bonus" is not one of'),
])
def test_bad_rules_are_refused_with_one_clear_line(sqlite_db, kwargs, message):
    acme = partners.create_partner(sqlite_db, "Acme", actor=ACTOR)
    kind = kwargs.pop("kind")
    with pytest.raises(ValidationError, match=message):
        commissions.create_rule(sqlite_db, acme["id"], kind, actor=ACTOR, **kwargs)


def test_the_database_guards_the_commission_ledger(db, settings):
    """The triggers of channels_0002 refuse through plain SQL what the ORM guard refuses, and let the
    application's own moves (approve, pay, end a rule) through."""
    import sqlalchemy as sa

    from modelshop.channels.tables import CommissionRule, Payout

    make_plan(db, "pro", base_fee="60.00")
    acme = partners.create_partner(db, "Acme", actor=ACTOR)
    commissions.create_rule(db, acme["id"], "percent", percent="20", hold_days=0, actor=ACTOR)
    commissions.create_rule(db, acme["id"], "bounty", bounty="25.00", hold_days=30, actor=ACTOR)
    cid = accounts.create_customer(db, "Ann", "pro", actor=ACTOR)["id"]
    attribution.bind_customer(db, settings, cid, params={"ref": acme["channel"]["code"]})
    bill(db, cid, 0)
    assert commissions.run_commissions(db, actor=ACTOR)["approved"] == 1
    commissions.payout(db, acme["id"], utcnow().strftime("%Y-%m"), actor=ACTOR)
    spare = commissions.create_rule(db, acme["id"], "bounty", bounty="1.00", actor=ACTOR)["id"]   # after: earn nothing
    ended = commissions.create_rule(db, acme["id"], "bounty", bounty="2.00", actor=ACTOR)["id"]
    commissions.end_rule(db, ended, actor=ACTOR)
    by_entry = {e["kind"]: e for e in commissions.list_commissions(db, partner_id=acme["id"])["entries"]}
    paid, pending = by_entry["percent"]["id"], by_entry["bounty"]["id"]
    assert (by_entry["percent"]["status"], by_entry["bounty"]["status"]) == ("paid", "pending")

    refused = [
        f"update channels_commissions set amount_minor = 1 where id = {pending}",
        f"update channels_commissions set amount_minor = 1 where id = {paid}",
        f"update channels_commissions set customer_id = customer_id + 1 where id = {pending}",
        f"update channels_commissions set status = 'approved' where id = {paid}",
        f"update channels_commissions set payout_id = null, status = 'approved' where id = {paid}",
        f"update channels_commissions set paid_at = created_at where id = {paid}",
        f"update channels_commissions set status = 'paid' where id = {pending}",
        f"update channels_commissions set status = 'approved' where id = {pending}",   # approved_at missing
        f"delete from channels_commissions where id = {pending}",
        "insert into channels_commissions (partner_id, rule_id, customer_id, invoice_id, entry, period, currency, "
        "base_minor, rate_bp, amount_minor, status, hold_until, created_at, approved_at, paid_at, payout_id, note) "
        "select partner_id, rule_id, customer_id, invoice_id, entry, period, currency, base_minor, rate_bp, "
        f"amount_minor, status, hold_until, created_at, approved_at, paid_at, payout_id, note "
        f"from channels_commissions where id = {paid}",
        "update channels_commission_rules set hold_days = 0",
        "update channels_commission_rules set tiers = '[[0, 9000]]' where kind = 'percent'",
        f"update channels_commission_rules set status = 'active', ended_at = null where id = {ended}",
        f"update channels_commission_rules set ended_at = created_at where id = {ended}",
        "delete from channels_commission_rules",
        "update channels_payouts set total_minor = 0",
        "delete from channels_payouts",
    ]
    for sql in refused:
        with pytest.raises(sa.exc.DBAPIError, match="never|starts pending|only moves"), db.engine.begin() as c:
            c.execute(sa.text(sql))
    # the moves the application makes itself stay open to SQL too (the bulk approval is one)
    with db.engine.begin() as c:
        c.execute(sa.text(f"update channels_commissions set status = 'approved', approved_at = created_at "
                          f"where id = {pending}"))
        c.execute(sa.text(f"update channels_commission_rules set status = 'ended', ended_at = created_at "
                          f"where id = {spare}"))
    listing = commissions.list_commissions(db, partner_id=acme["id"])
    assert [(e["kind"], e["amount"], e["status"]) for e in listing["entries"]] == [
        ("percent", "12.00", "paid"), ("bounty", "25.00", "approved")]

    # and the ORM guard names the same rules before any SQL is sent
    with pytest.raises(Conflict, match=r"never changes its terms \(hold_days\)"), db.session() as s:
        s.get(CommissionRule, spare).hold_days = 0
    with pytest.raises(Conflict, match="has ended"), db.session() as s:
        s.get(CommissionRule, ended).status = "active"
    with pytest.raises(Conflict, match="written once"), db.session() as s:
        s.scalars(select(Payout)).one().total_minor = 0
    with pytest.raises(Conflict, match="never deleted"), db.session() as s:
        s.delete(s.get(CommissionRule, spare))
    with pytest.raises(Conflict, match="starts pending"), db.session() as s:
        c = s.get(Commission, paid)
        s.add(Commission(partner_id=c.partner_id, rule_id=c.rule_id, customer_id=c.customer_id, entry="accrual",
                         period=c.period, currency=c.currency, base_minor=0, amount_minor=100, status="paid",
                         hold_until=c.hold_until, created_at=utcnow(), paid_at=utcnow(), payout_id=c.payout_id))


def test_paid_invoices_are_named_facts(db, settings):
    """What the job works from: each paid invoice of a partner's customer as a `PaidInvoice` with named
    fields (base = subtotal less discounts); unpaid invoices and customers of no partner are left out."""
    make_plan(db, "pro", base_fee="60.00")
    acme = partners.create_partner(db, "Acme", actor=ACTOR)
    ann = accounts.create_customer(db, "Ann", "pro", actor=ACTOR)["id"]
    bound_at = month_start(0) + dt.timedelta(days=1)
    attribution.bind_customer(db, settings, ann, params={"ref": acme["channel"]["code"]}, now=bound_at)
    dee = accounts.create_customer(db, "Dee", "pro", actor=ACTOR)["id"]
    attribution.bind_customer(db, settings, dee)  # direct: no partner
    paid = bill(db, ann, 0)
    bill(db, ann, 1, pay=False)
    bill(db, dee, 0)
    voided = bill(db, ann, 2)
    invoices.void(db, voided, reason="refund", actor=ACTOR)
    with db.session() as s:
        facts = commissions.paid_invoices(s)
    assert [type(f) for f in facts] == [commissions.PaidInvoice] * 2
    first, second = facts
    assert (first.invoice_id, first.customer_id, first.period, first.currency, first.base_minor, first.voided_at,
            first.partner_id, first.bound_at) == (paid, ann, period(0), "USD", 6000, None, acme["id"], bound_at)
    assert first.paid_at is not None and first.paid_at <= second.paid_at
    assert (second.invoice_id, second.period, second.voided_at is not None) == (voided, period(2), True)
