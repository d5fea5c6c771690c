"""The channel report on a small world whose figures are worked out by hand, on SQLite and PostgreSQL,
and the CLI over it (`modelshop channels create|report --json`).

This month: "news" (campaign, ad spend 300.00) brought 3 visitors and 2 signups on pro (60.00):
Ann (key, 4 calls of 1 s, paid) and Bob (key, no call, invoice finalised, unpaid). "blogger"
(a partner's affiliate channel, 10 % commission, partner fee 50.00) brought 1 visitor and Cy (key,
2 calls, paid). Dee came directly (no key); 2 more visitors came with no channel.
Serving cost: 0.50 per compute second → Ann 2.00, Cy 1.00. No month before: churn is the floor, 2 %.

    news     revenue 120.00, margin 118.00 (98.3 %), cost 300.00, CAC 150.00, ARPA 60.00,
             LTV 60 × 118/120 ÷ 0.02 = 2950.00, LTV:CAC 19.67, payback 150 ÷ 59 = 2.5, ROI (118 − 300) ÷ 300 = −0.61,
             ROAS 0.40
    blogger  revenue 60.00, margin 59.00, cost 50.00 + 6.00 = 56.00, CAC 56.00, LTV 2950.00, LTV:CAC 52.68,
             payback 0.9, ROI (59 − 56) ÷ 56 = 0.05, ROAS none (no ad spend)
"""

from __future__ import annotations

import json
from decimal import Decimal

from modelshop.billing import accounts, invoices, usage
from modelshop.channels import analytics, attribution, channels, commissions, partners
from modelshop.cli import main
from modelshop.db import get_database, utcnow
from tests.support import ACTOR, make_plan, month_start, period


def build_world(db, settings) -> dict:
    make_plan(db, "pro", base_fee="60.00")
    news = channels.create_channel(db, "News", "campaign", actor=ACTOR)
    blog = partners.create_partner(db, "Blogger", actor=ACTOR)
    commissions.create_rule(db, blog["id"], "percent", percent="10", hold_days=0, actor=ACTOR)
    channels.set_cost(db, news["code"], period(0), "300", actor=ACTOR)
    channels.set_cost(db, blog["channel"]["code"], period(0), "50", kind="partner_fee", actor=ACTOR)
    channels.set_cost(db, news["code"], period(0), "999", currency="EUR", actor=ACTOR)  # another currency: left out
    visitors = [attribution.new_visitor_id() for _ in range(6)]
    for v, ref in zip(visitors, [news["code"], news["code"], news["code"], blog["channel"]["code"], None, None],
                      strict=True):
        attribution.record_visit(db, v, "/store/m", {"ref": ref} if ref else {})
    attribution.record_visit(db, visitors[0], "/store/m", {"ref": news["code"]})  # the same visitor again
    made = {}
    for name, v in (("ann", visitors[0]), ("bob", visitors[1]), ("cy", visitors[3])):
        made[name] = attribution.signup(db, settings, email=f"{name}@x.io", plan="pro", visitor_id=v)
    dee = accounts.create_customer(db, "Dee", "pro", actor=ACTOR)["id"]
    attribution.bind_customer(db, settings, dee, None)
    batch = []
    for name, n in (("ann", 4), ("cy", 2)):
        c, k = made[name]["customer"]["id"], made[name]["key"]["id"]
        batch += [usage.Metered(customer_id=c, key_id=k, request_id=f"{name}{i}", route="/predict", model="m:1",
                                requests=1, tokens=5, characters=20, compute_us=1_000_000, occurred_at=utcnow())
                  for i in range(n)]
    usage.write_batch(db, batch)
    for name in ("ann", "bob", "cy"):
        cid = made[name]["customer"]["id"]
        inv = invoices.run_invoices(db, period(0), customer_id=cid, actor=ACTOR)["invoices"][0]["id"]
        invoices.finalize(db, inv, actor=ACTOR, now=month_start(1))
        if name != "bob":
            invoices.pay(db, inv, actor=ACTOR)
    commissions.run_commissions(db, actor=ACTOR)
    return {"news": news["code"], "blogger": blog["channel"]["code"]}


def test_report_figures(db, settings):
    settings = settings.model_copy(update={"serving_cost_per_compute_second": {"*": Decimal("0.5")}})
    codes = build_world(db, settings)
    rows = {r["code"]: r for r in analytics.report(db, settings, period(0))}
    assert set(rows) == {codes["news"], codes["blogger"], "direct"}
    news, blog, direct = rows[codes["news"]], rows[codes["blogger"]], rows["direct"]
    assert {k: news[k] for k in ("visits", "signups", "keys", "first_calls", "first_paid", "paying", "new_paying")} == \
        {"visits": 3, "signups": 2, "keys": 2, "first_calls": 1, "first_paid": 1, "paying": 2, "new_paying": 2}
    assert {k: news[k] for k in ("revenue", "serving_cost", "gross_margin", "margin_percent", "cost", "cac", "arpa",
                                 "churn", "ltv", "ltv_cac", "payback_months", "roi", "roas")} == {
        "revenue": "120.00", "serving_cost": "2.00", "gross_margin": "118.00", "margin_percent": "98.3",
        "cost": "300.00", "cac": "150.00", "arpa": "60.00", "churn": "0.0200", "ltv": "2950.00",
        "ltv_cac": "19.67", "payback_months": "2.5", "roi": "-0.61", "roas": "0.40"}
    assert {k: blog[k] for k in ("visits", "signups", "paying", "revenue", "serving_cost", "marketing_cost",
                                 "commissions", "cost", "cac", "ltv", "ltv_cac", "payback_months", "roi", "roas")} == {
        "visits": 1, "signups": 1, "paying": 1, "revenue": "60.00", "serving_cost": "1.00",
        "marketing_cost": "50.00", "commissions": "6.00", "cost": "56.00", "cac": "56.00", "ltv": "2950.00",
        "ltv_cac": "52.68", "payback_months": "0.9", "roi": "0.05", "roas": None}
    assert (direct["visits"], direct["signups"], direct["keys"], direct["paying"], direct["cac"]) == (2, 1, 0, 0, None)

    cohort = analytics.cohorts(db, period(0), months=3, channel_id=None)["cohorts"]
    assert [(c["cohort"], c["customers"], c["active"]) for c in cohort] == [
        (period(-2), 0, [0, 0, 0]), (period(-1), 0, [0, 0]), (period(0), 4, [2])]
    assert cohort[-1]["retention"] == ["0.500"]
    months = analytics.monthly(db, period(0), months=2)
    assert months[-1] == {"month": period(0), "signups": 4, "requests": 6, "revenue": "180.00"}
    csv_lines = analytics.report_csv(list(rows.values())).splitlines()
    assert csv_lines[0].startswith("code,name,kind,partner,visits,signups") and len(csv_lines) == 4


def test_cli_create_and_report(settings, capsys):
    def run(*argv):
        main(list(argv))
        return json.loads(capsys.readouterr().out)

    made = run("channels", "create", "--name", "Spring Newsletter", "--kind", "campaign", "--json")
    assert made["id"] and made["code"] == "spring-newsletter"
    assert run("channels", "create", "--name", "Spring Newsletter", "--kind", "campaign", "--json")["code"] == \
        "spring-newsletter-2"
    link = run("channels", "link", "--channel", made["code"], "--utm-source", "newsletter", "--json")
    assert link["url"] == "/store?ref=spring-newsletter&utm_source=newsletter"
    build_world(get_database(settings), settings)
    rows = run("channels", "report", "--period", period(0), "--json")
    assert {"code", "visits", "signups", "paying", "revenue", "cost", "cac", "ltv", "roi"} <= set(rows[0])
    by_code = {r["code"]: r for r in rows}
    assert by_code["news"]["signups"] == 2 and by_code["spring-newsletter"]["visits"] == 0


def test_cli_bad_input_is_one_line(settings, capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["channels", "create", "--name", "X", "--kind", "afiliate"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and 'did you mean "affiliate"' in err
    with pytest.raises(SystemExit):
        main(["channels", "report", "--period", "2026-13"])
    assert capsys.readouterr().err.startswith("error: period:")
