"""The chat playground of a generative model in real headless Chromium against a real uvicorn server:
type a message, watch the tiny random Llama's reply grow in the page as it streams, see markup stay
text, and see the demo's limit as one clear line.

Needs Debian's chromium and Playwright's Python package (no browser download):
    apt-get install -y chromium && pip install playwright
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import live_server
from tests.web.helpers import build_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# every step of the reply's text in the chat log: the length before each append (characterData's oldValue)
WATCH = """() => {
  window.__steps = [];
  new MutationObserver(records => records.forEach(r => {
    if (r.type === "characterData" && r.target.parentNode.classList.contains("assistant"))
      window.__steps.push(r.oldValue.length);
  })).observe(document.getElementById("llm-log"), {subtree: true, characterData: true, characterDataOldValue: true});
}"""


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def llm_app(shop_settings, tiny_llama):
    from modelshop.llm.registry import add_local

    add_local("tiny", str(tiny_llama), settings=shop_settings)
    return build_app(shop_settings.model_copy(update={"llm_processes": False}))


def send(page, text: str) -> None:
    page.fill("#llm-text", text)
    page.click("#llm-send")
    page.wait_for_selector("#llm-send:not([disabled])", timeout=30_000)


def test_the_reply_streams_into_the_page(browser, llm_app):
    with live_server(llm_app) as base:
        page = browser.new_page()
        page.goto(f"{base}/store/tiny")
        assert page.locator("#model-kind").inner_text() == "generative"
        page.evaluate(WATCH)

        send(page, "Hello! <b>How</b> can you help?")
        reply = page.locator(".llm-msg.assistant").last
        assert reply.get_attribute("data-finish") in {"stop", "length"}
        text = reply.text_content()
        steps = page.evaluate("window.__steps")
        assert text.strip() and len(steps) > 1
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] < len(text)   # it grew, piece by piece
        # the visitor's markup is text, not elements
        assert page.locator(".llm-msg.user").first.inner_text() == "Hello! <b>How</b> can you help?"
        assert page.locator("#llm-log b").count() == 0
        assert page.locator("#llm-error").is_hidden()

        send(page, "And then?")                     # the second turn carries the first
        assert page.locator(".llm-msg.assistant").count() == 2
        assert page.locator(".llm-msg.assistant").last.get_attribute("data-finish") in {"stop", "length"}

        send(page, "Once more")
        send(page, "Too many")                      # storefront_demo_rpm = 3 in the web tests
        error = page.locator("#llm-error")
        assert error.is_visible() and "allows 3 messages a minute" in error.inner_text()
        assert page.locator(".llm-msg.assistant").count() == 3     # no empty bubble for the refused one

        page.click("#llm-reset")
        assert page.locator(".llm-msg").count() == 0 and error.is_hidden()
