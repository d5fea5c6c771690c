"""`modelshop demo` end to end: data → training → plans, keys and calls → channels, partners, invoices → the
support bot and the storefront, with a tiny BERT so it runs in seconds; a second run seeds nothing twice."""

from __future__ import annotations


def test_demo_orchestration_on_a_tiny_model(settings, tiny_bert, tiny_llama):
    """The demo's steps end to end, with a tiny BERT and a tiny Llama standing in for smollm2, so it runs in
    seconds (the real run is `modelshop demo`)."""
    from modelshop.demo import run_demo

    said: list[str] = []
    result = run_demo(settings, epochs=1, base_model=str(tiny_bert), serve=False, llm=str(tiny_llama),
                      say=said.append)
    assert result["train"]["version"] == 1 and result["train"]["baseline"]["macro_f1"] > 0.2
    assert any("registered support-intent:1" in s for s in said)
    assert result["plans"] == ["free", "payg", "pro"] and result["key"].startswith("ms_")
    sold = demo_world(settings)
    for ch in result["channels"]:  # each channel's customers signed up, hold keys, called the model, are invoiced
        row = sold["report"][ch["code"]]
        assert (row["signups"], row["keys"], row["first_calls"], row["paying"]) == (len(ch["customers"]),) * 4
        assert row["revenue"] != "0.00"
    assert [ch["kind"] for ch in result["channels"]] == ["reseller", "campaign"]
    assert sold["report"]["spring-newsletter"]["visits"] > 3 and sold["report"]["spring-newsletter"]["cac"]
    assert sold["events"] > 0 and sold["storefront_bot"] == "demo-support" and sold["datasets"] == 1
    assert result["bot"]["kb"]["built"] and any("support bot demo-support" in s for s in said)
    assert result["llm"]["name"] == "smollm2" and result["llm"]["registered"]
    assert any("generative model smollm2:1" in s for s in said)

    first_run = len(said)
    again = run_demo(settings, epochs=1, base_model="tfidf", serve=False, llm=str(tiny_llama), say=said.append)
    assert again["customer_id"] == result["customer_id"] and again["key"] is None  # the first run's key is kept
    assert again["key_id"] == result["key_id"] and not any(result["key"] in line for line in said[first_run:])
    assert any("shown when the first run made it" in line for line in said[first_run:])
    assert result["profile"]["pii"]  # the demo data carries (fake) e-mails and phones
    assert again["channels"] == result["channels"] and not again["bot"]["kb"]["built"]
    assert not again["llm"]["registered"] and again["llm"]["version"] == 1    # converted once
    assert demo_world(settings) == sold  # nothing seeded twice: customers, visits, calls, rules, bots, datasets


def test_a_second_demo_run_keeps_the_demo_key_and_new_key_rotates_it(settings):
    from modelshop.billing.keys import list_keys, lookup_secret
    from modelshop.db import get_database
    from modelshop.demo.commerce import describe_key, seed_billing

    db = get_database(settings)
    first = seed_billing(db)
    customer = first["customer_id"]
    assert first["key"].startswith("ms_live_") and first["key"] in describe_key(first)
    again = seed_billing(db)
    assert again["key"] is None and (again["customer_id"], again["key_id"]) == (customer, first["key_id"])
    said = describe_key(again)  # the key cannot be shown again (only its hash is kept): say which one and how
    assert f"key {first['key_id']} ({first['key_prefix']}…)" in said and "first run" in said
    assert "`modelshop demo --new-key`" in said and f"`modelshop keys create --customer {customer}`" in said
    assert [(k["id"], k["status"]) for k in list_keys(db, customer)] == [(first["key_id"], "active")]
    assert lookup_secret(db, first["key"]).status == "active"  # the key the first run showed still works

    rotated = seed_billing(db, new_key=True)
    assert rotated["key"].startswith("ms_live_") and rotated["key"] != first["key"]
    assert rotated["replaced_key_id"] == first["key_id"]
    assert f"key {first['key_id']} is revoked" in describe_key(rotated)
    assert {k["id"]: k["status"] for k in list_keys(db, customer)} == {first["key_id"]: "revoked",
                                                                       rotated["key_id"]: "active"}
    assert seed_billing(db)["key_id"] == rotated["key_id"]


def demo_world(settings) -> dict:
    """What the demo seeded, counted: the channel report, rows per table, the storefront's bot."""
    from sqlalchemy import func, select

    from modelshop.apps import feedback, support
    from modelshop.apps.tables import Bot
    from modelshop.billing.periods import period_of
    from modelshop.billing.tables import Customer, Invoice, UsageEvent
    from modelshop.channels import analytics
    from modelshop.channels.tables import Channel, CommissionRule, Partner, Visit
    from modelshop.db import get_database, utcnow

    db = get_database(settings)
    with db.session() as s:
        counts = {t.__tablename__: s.scalar(select(func.count()).select_from(t))
                  for t in (Customer, Invoice, Channel, CommissionRule, Partner, Visit, Bot)}
        events = s.scalar(select(func.count()).select_from(UsageEvent))
    report = {r["code"]: r for r in analytics.report(db, settings, period_of(utcnow(), "month"))}
    return {"counts": counts, "events": events, "report": report, "storefront_bot": support.storefront_bot(settings),
            "datasets": len(feedback.list_datasets("demo-support", settings=settings))}
