"""The console's token usage page: generative models' input and output tokens of a period, per model and
per customer, as tables and a chart, with the part that was estimated (an upstream that sent no usage)
apart; a classifier's calls (no input or output tokens) are not in it."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from modelshop.billing import accounts, keys, usage
from modelshop.db import get_database, utcnow
from tests.support import ACTOR, ADMIN_KEY, month_start, period
from tests.web.helpers import login


def _row(page: str, table: str, first_cell: str) -> list[str]:
    """The cells of the row of `table` (its id) that starts with `first_cell`."""
    body = re.search(rf'<table id="{table}">(.*?)</table>', page, re.S).group(1)
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in {table}")


def test_token_usage_per_model_and_customer(app, shop_settings):
    db = get_database(shop_settings)
    ids = {name: accounts.create_customer(db, name, "payg", actor=ACTOR)["id"] for name in ("Ann", "Bob")}
    key = {name: keys.create_key(db, cid, actor=ACTOR)["id"] for name, cid in ids.items()}
    now = utcnow()

    def event(i, name, model, inp, out, at=now, estimated=False):
        return usage.Metered(customer_id=ids[name], key_id=key[name], request_id=f"r{i}", route="/v1/chat/completions",
                             model=model, requests=1, tokens=inp + out, characters=0, compute_us=1000,
                             occurred_at=at, input_tokens=inp, output_tokens=out, estimated=estimated)

    assert all(usage.write_batch(db, [
        event(1, "Ann", "smollm2:1", 120, 48), event(2, "Ann", "smollm2:1", 80, 52),
        event(3, "Bob", "smollm2:1", 10, 5), event(4, "Bob", "qwen:2", 300, 700, estimated=True),
        event(5, "Bob", "support:1", 0, 0),                                           # a classifier call
        event(6, "Ann", "qwen:2", 9999, 9999, at=month_start(-1, now))]))               # last month
    with TestClient(app) as client:
        login(client, ADMIN_KEY)
        page = client.get("/console/usage")
        assert page.status_code == 200 and 'href="/console/usage"' in page.text
        text = page.text
        # model, calls, input, output, and the estimated part of input and output
        assert _row(text, "tokens-by-model", "smollm2:1") == ["smollm2:1", "3", "210", "105", "0", "0"]
        assert _row(text, "tokens-by-model", "qwen:2") == ["qwen:2", "1", "300", "700", "300", "700"]
        assert "support:1" not in text
        assert _row(text, "tokens-by-customer", str(ids["Ann"])) == [str(ids["Ann"]), "Ann", "smollm2:1", "2", "200",
                                                                     "100", "0", "0"]
        # the model with the most output tokens first, in the table and the chart
        assert text.index("qwen:2") < text.index("smollm2:1")
        assert re.search(r'<img class="chart" src="data:image/svg\+xml;base64,', text)
        assert re.search(r"4 calls · 510 input tokens ·\s+805 output tokens", text)
        assert re.search(r'id="token-estimated"[^>]*>[^<]*1 calls · 300 input tokens ·\s+700 output tokens', text)
        last = client.get(f"/console/usage?period={period(-1)}").text
        assert _row(last, "tokens-by-model", "qwen:2") == ["qwen:2", "1", "9999", "9999", "0", "0"]
        assert 'id="token-estimated"' not in last                          # nothing estimated: no line for it
        empty = client.get("/console/usage?period=2020-01").text
        assert "<img" not in empty.split("<main", 1)[-1] and 'class="muted">—<' in empty
