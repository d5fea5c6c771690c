"""End to end in real headless Chromium against a real uvicorn server on 127.0.0.1:

visit the storefront with ?ref=CODE&utm_source=newsletter → try the playground → sign up → see the
key once → call the API with it → the console (logged in through its form) shows the customer under
that channel and the funnel counts moved.

Needs Debian's chromium and Playwright's Python package (no browser download):
    apt-get install -y chromium && pip install playwright
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from modelshop.channels import channels
from modelshop.db import get_database
from tests.support import ADMIN_KEY, live_server
from tests.web.helpers import build_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def report_row(page, code: str) -> dict[str, str]:
    row = page.locator(f'tr.channel[data-code="{code}"]')
    return {k: row.locator(f"td.{k}").inner_text().strip() for k in ("visits", "signups", "keys", "first_calls")}


def test_storefront_to_console_in_chromium(browser, shop_settings):
    db = get_database(shop_settings)
    code = channels.create_channel(db, "Spring Newsletter", "campaign", actor="test")["code"]
    app = build_app(shop_settings)
    with live_server(app) as base:
        page = browser.new_page()
        page.goto(f"{base}/store/support?ref={code}&utm_source=newsletter")
        assert page.locator("#model-name").inner_text().startswith("support")

        page.fill("#playground-text", "great product, works well")
        page.click("#playground-try")
        page.wait_for_selector("tr.prediction", timeout=30_000)
        assert page.locator("tr.prediction").first.inner_text().startswith("good")

        page.click("#lang-zh")
        assert "价格" in page.locator("#pricing h2").inner_text()
        page.click("#lang-en")

        page.fill("#signup-email", "e2e@example.com")
        page.select_option("#signup-plan", "payg")
        page.click("#signup-submit")
        key = page.locator("#api-key").inner_text().strip()
        assert key.startswith("ms_live_") and "only time the key is shown" in page.content()
        page.reload()  # a reload re-sends the form: the same e-mail gets no second key
        assert "already has an account" in page.content()

        r = httpx.post(f"{base}/predict?model=support", json={"inputs": "love it"},
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200 and r.json()[0]["label"] in {"good", "bad"}

        console = browser.new_page()
        console.goto(f"{base}/console/channels")
        assert console.url.endswith("/console/login?why=unauthorized")
        console.fill("#console-key", ADMIN_KEY)
        console.click("#console-login")
        console.wait_for_url(f"{base}/console")
        assert ADMIN_KEY not in console.url
        cookies = {c["name"]: c for c in console.context.cookies()}
        assert cookies["ms_console"]["httpOnly"] and cookies["ms_console"]["path"] == "/console"
        console.goto(f"{base}/console/channels")
        assert report_row(console, code) == {"visits": "1", "signups": "1", "keys": "1", "first_calls": "1"}
        console.goto(f"{base}/console/customers")
        row = console.locator('tr.customer[data-email="e2e@example.com"]').inner_text()
        assert code in row
        console.goto(f"{base}/console/channels/{code}")
        assert re.search(r"e2e@example\.com", console.locator("#channel-customers").inner_text())
        assert console.locator("img.chart").count() >= 2


def test_chat_widget_to_the_console_labelling_and_tickets_pages(browser, bot_settings):
    """Ask the storefront's chat widget, get the FAQ answer, rate it down; label it in the console; then a
    hand-off answered in the console shows in the widget."""
    from modelshop.apps import feedback
    from tests.support import SHOP_FAQ
    from tests.web.helpers import BOT

    question = "how can I send back something I bought?"
    with live_server(build_app(bot_settings)) as base:
        page = browser.new_page()
        page.goto(f"{base}/store/support")
        assert page.locator("#chat-panel").is_hidden()
        page.click("#chat-launch")
        page.fill("#chat-text", question)
        page.click("#chat-send")
        answer = page.locator('.chat-msg.bot[data-source="faq"]')
        answer.wait_for(timeout=30_000)
        assert answer.inner_text().startswith(SHOP_FAQ[0][2])
        answer.locator("button.chat-down").click()
        page.wait_for_selector(".chat-rated", timeout=10_000)
        assert "Thanks for your feedback" in answer.inner_text()

        console = browser.new_page()
        console.goto(f"{base}/console/login")
        console.fill("#console-key", ADMIN_KEY)
        console.click("#console-login")
        console.wait_for_url(f"{base}/console")
        console.click('a[href="/console/labels"]')
        row = console.locator("tr.label-item", has_text=question)
        assert row.count() == 1 and "down_rated" in row.inner_text()
        row.locator("select.label-choice").select_option("bad")
        row.locator("button.label-save").click()
        assert 'labelled "bad"' in console.locator("#done").inner_text()
        console.goto(f"{base}/console/labels")
        assert console.locator("tr.label-item", has_text=question).count() == 0
        console.locator(f'form.export-form[data-dataset="{BOT}"] button').click()
        assert f"dataset {BOT} version 1" in console.locator("#done").inner_text()

        # a hand-off: a person answers in the console, and the widget shows the answer
        page.fill("#chat-text", "Can I talk to a human please?")
        page.click("#chat-send")
        page.locator('.chat-msg.bot[data-source="handoff"]').wait_for(timeout=30_000)
        console.goto(f"{base}/console/tickets")
        ticket = console.locator(".ticket", has_text="Can I talk to a human please?")
        ticket.locator(".ticket-text").fill("Hi, this is Anna from the team.")
        ticket.locator(".ticket-reply").click()
        assert "answered" in console.locator("#done").inner_text()
        page.locator(".chat-msg.agent", has_text="Hi, this is Anna from the team.").wait_for(timeout=20_000)
    version = feedback.list_datasets(BOT, settings=bot_settings)[-1]
    rows = [json.loads(line) for line in Path(version["path"]).read_text(encoding="utf-8").splitlines()]
    assert {"text": question, "label": "bad"} in rows
