"""The billing commands: thin calls into the library, `--json` for machines, one-line errors."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from modelshop.billing import BillingGate
from modelshop.cli import main
from modelshop.db import get_database
from modelshop.gate import Units
from tests.support import serve_call


def run(capsys, *argv: str):
    main(list(argv))
    out = capsys.readouterr().out
    return json.loads(out) if "--json" in argv else out


def test_operator_flow(settings, plan_files, capsys):
    plan = run(capsys, "plans", "create", "--file", str(plan_files["grad"]), "--json")
    assert (plan["code"], plan["version"], plan["created"]) == ("grad", 1, True)
    assert "unchanged, still version 1" in run(capsys, "plans", "create", "--file", str(plan_files["grad"]))
    reseller = run(capsys, "resellers", "create", "--name", "acme", "--json")
    assert reseller["discount_percent"] == "20.00"            # the settings' default
    customer = run(capsys, "customers", "create", "--name", "Dora", "--plan", "grad", "--email", "d@x.io",
                   "--reseller", str(reseller["id"]), "--json")
    key = run(capsys, "keys", "create", "--customer", str(customer["id"]), "--models", "minilm,bert",
              "--rpm", "100", "--tpm", "5000", "--expires", "2099-01-01T00:00:00Z", "--json")
    assert key["key"].startswith("ms_live_") and key["models"] == ["bert", "minilm"] and key["id"]
    spare = run(capsys, "keys", "create", "--customer", str(customer["id"]))
    assert spare.startswith("ms_live_") and "shown once" in spare

    gate = BillingGate(settings, get_database(settings))

    async def calls():
        out = [await serve_call(gate, key["key"], "minilm:1", Units(1, 12, 50)) for _ in range(60)]
        await gate.close()
        return out

    assert {r[0] for r in asyncio.run(calls())} == {"ok"}
    usage = run(capsys, "usage", "--customer", str(customer["id"]), "--json")
    assert usage["totals"] == {"requests": 60, "tokens": 720, "characters": 3000, "input_tokens": 0,
                               "output_tokens": 0}

    period = usage["period"]
    invoices = run(capsys, "invoices", "run", "--period", period, "--json")
    (inv,) = invoices["invoices"]
    # 10.00 base + 10 billable × 0.05003 = 0.5003 → 0.50; subtotal 10.50, 20 % off = 2.10 → 8.40
    assert (inv["customer_id"], inv["currency"], inv["subtotal"], inv["discount"], inv["total"]) == \
        (customer["id"], "USD", "10.50", "2.10", "8.40")
    assert Decimal(inv["total"]) == Decimal("8.40") and isinstance(inv["total"], str)
    assert "total" in run(capsys, "invoices", "run", "--period", period)

    wallet = run(capsys, "wallet", "topup", "--customer", str(customer["id"]), "--amount", "3.50", "--json")
    assert wallet["balance"] == "3.50"
    revenue = run(capsys, "revenue", "--period", period, "--json")
    assert revenue["totals"][0]["revenue"] == "8.40" and revenue["by_model"][0]["model"] == "minilm:1"
    assert "margin" in run(capsys, "revenue", "--period", period)

    revoked = run(capsys, "keys", "revoke", str(key["id"]), "--json")
    assert revoked["status"] == "revoked" and "key" not in revoked
    audit = run(capsys, "audit", "--json")
    assert audit[0]["action"] == "key.revoke" and audit[0]["actor"] == "cli"
    assert key["key"] not in json.dumps(audit)


@pytest.mark.parametrize("argv, message", [
    (["invoices", "run", "--period", "2026-13"], 'period: "2026-13" must be YYYY-MM'),
    (["customers", "create", "--name", "X", "--plan", "nope"], 'plan "nope" does not exist'),
    (["keys", "create", "--customer", "99"], "customer 99 does not exist"),
    (["keys", "create", "--customer", "1", "--expires", "yesterday"], '"yesterday" is not an ISO-8601 time'),
    (["invoices", "finalize", "1"], "invoice 1 does not exist"),
    (["wallet", "topup", "--customer", "1", "--amount", "1"], "customer 1 does not exist"),
])
def test_bad_input_is_one_line_and_status_2(settings, argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
