"""The console's revenue page: revenue, upstream cost (at the registered upstream models' prices), serving
cost and margin of a period per model and customer; a model sold below its cost stands out (its row
marked, its margin negative) under a warning. The channel report's upstream cost comes from the same
registry.

Ann's plan sells every model at 1.00 / 2.00 per million input / output tokens. Upstream "gpt" costs
0.15 / 0.60: 1 M in and 1 M out bill 3.00, cost 0.75, margin 2.25. Upstream "pricey" costs 3.00 / 4.00:
1 M in and 0.5 M out (estimated) bill 2.00, cost 5.00, margin -3.00.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from modelshop.billing import accounts, invoices, keys, usage
from modelshop.billing.plans import parse_plan
from modelshop.channels import attribution
from modelshop.db import get_database, utcnow
from modelshop.llm.upstream import add_upstream
from tests.support import ACTOR, ADMIN_KEY, month_start
from tests.web.helpers import login

M = 1_000_000
RESALE = {"code": "resale", "currency": "USD", "charges": [
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.000001"},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.000002"}]}


def _row(page: str, table: str, first_cell: str) -> tuple[str, list[str]]:
    """The attributes and cells of the row of `table` (its id) that starts with `first_cell`."""
    body = re.search(rf'<table id="{table}">(.*?)</table>', page, re.S).group(1)
    for attrs, row in re.findall(r"<tr([^>]*)>(.*?)</tr>", body, re.S):
        cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells and cells[0] == first_cell:
            return attrs, cells
    raise AssertionError(f"no row {first_cell!r} in {table}")


def _world(settings) -> int:
    db = get_database(settings)
    add_upstream("gpt", "http://127.0.0.1:9/v1", "gpt-4o-mini", cost_input="0.15", cost_output="0.60",
                 settings=settings)
    add_upstream("pricey", "http://127.0.0.1:9/v1", "big-model", cost_input="3.00", cost_output="4.00",
                 settings=settings)
    accounts.create_plan(db, parse_plan(RESALE), actor=ACTOR)
    ann = accounts.create_customer(db, "Ann", "resale", actor=ACTOR)["id"]
    attribution.bind_customer(db, settings, ann, None)                      # a direct customer
    key = keys.create_key(db, ann, actor=ACTOR)["id"]
    now = utcnow()

    def event(i, model, inp, out, estimated=False):
        return usage.Metered(customer_id=ann, key_id=key, request_id=f"r{i}", route="/v1/chat/completions",
                             model=model, requests=1, tokens=inp + out, characters=0, compute_us=0, occurred_at=now,
                             input_tokens=inp, output_tokens=out, estimated=estimated)

    assert usage.write_batch(db, [event(1, "gpt:1", M, M), event(2, "pricey:1", M, M // 2, estimated=True)]) == \
        [True, True]
    invoices.run_invoices(db, month_start(0).strftime("%Y-%m"), actor=ACTOR)
    return ann


def test_revenue_page_shows_upstream_cost_margin_and_a_warning(app, shop_settings):
    ann = _world(shop_settings)
    with TestClient(app) as client:
        login(client, ADMIN_KEY)
        page = client.get("/console/revenue")
        assert page.status_code == 200 and 'href="/console/revenue"' in page.text
        text = page.text
        # model, currency, revenue, upstream cost, serving cost, margin, margin %, input, output, estimated tokens
        attrs, gpt = _row(text, "revenue-by-model", "gpt:1")
        assert gpt == ["gpt:1", "USD", "3.00", "0.75", "0.00", "2.25", "75.0", str(M), str(M), "0"]
        assert "loss" not in attrs
        attrs, pricey = _row(text, "revenue-by-model", "pricey:1")
        assert pricey == ["pricey:1", "USD", "2.00", "5.00", "0.00", "-3.00", "-150.0", str(M), str(M // 2),
                          str(3 * M // 2)]
        assert 'class="loss"' in attrs
        attrs, customer = _row(text, "revenue-by-customer", str(ann))
        assert customer[:7] == [str(ann), "Ann", "USD", "5.00", "5.75", "0.00", "-0.75"] and "loss" in attrs
        warnings = re.findall(r'<p class="error" role="alert"[^>]*>(.*?)</p>', text, re.S)
        assert len(warnings) == 1 and "pricey:1 is sold below its cost" in warnings[0] and "-3.00 USD" in warnings[0]
        assert re.search(r'<img class="chart" src="data:image/svg\+xml;base64,', text)

        csv = client.get("/console/channels/report.csv").text.splitlines()
        header, direct = csv[0].split(","), next(line for line in csv if line.startswith("direct,")).split(",")
        row = dict(zip(header, direct, strict=True))
        assert (row["revenue"], row["upstream_cost"], row["gross_margin"]) == ("5.00", "5.75", "-0.75")

        empty = client.get("/console/revenue?period=2020-01").text
        assert 'role="alert"' not in empty and "<img" not in empty.split("<main", 1)[-1]
