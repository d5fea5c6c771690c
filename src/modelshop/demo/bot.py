"""The demo's support bot: the bundled FAQ as a knowledge base, the demo's intent model, hand-off rules.

The bot is marked for the storefront, so the chat widget appears on the store pages; what visitors
rate down goes to the labelling queue of dataset `demo-support`, whose version 1 is the bundled
training data (so a labelled message shows up in version 2). Running it again rebuilds nothing
that has not changed.
"""

from __future__ import annotations

from pathlib import Path

from modelshop.apps import faq, feedback, support
from modelshop.apps.artifacts import ArtifactStore
from modelshop.settings import Settings

FAQ = Path(__file__).parent / "data" / "faq.jsonl"
KB_NAME = "demo-faq"
BOT_NAME = "demo-support"
# what the bot says when it recognises the intent but the FAQ has no confident answer
REPLIES = {
    "refund": "I can help with a refund. Returns are free within 30 days, and the money reaches your payment "
              "method within 5 working days of the parcel arriving. What is your order number?",
    "delivery": "Let me help with your delivery. The tracking link is in your shipping e-mail; if the parcel is "
                "late or lost, send me the order number and I will look into it.",
    "account": "For account questions: passwords are reset from the login page, and security and privacy "
               "settings are under Account settings. What would you like to change?",
    "billing": "For billing: invoices are under Account, then Billing, and we refund double charges within "
               "5 working days. What does the charge look like?",
    "product_question": "Good question! Tell me which product you mean and I will find the details.",
    "praise": "Thank you, that is lovely to hear! We will pass it on to the team.",
}


def seed_bot(settings: Settings, intent_model: str, training_data: Path) -> dict:
    """Knowledge base `demo-faq` (rebuilt only when the file changed), bot `demo-support`, dataset v1."""
    store = ArtifactStore.from_settings(settings)
    entries = faq.read_pairs(FAQ)
    current = [r for r in store.list(faq.KIND, KB_NAME) if r.stage == "production"]
    if current and current[0].data_sha256 == faq.entries_sha256(entries):
        kb = {"name": KB_NAME, "version": current[0].version, "entries": current[0].meta.get("entries"),
              "threshold": current[0].meta.get("threshold"), "built": False}
    else:
        made = faq.build_kb(FAQ, KB_NAME, settings=settings)
        kb = {k: made[k] for k in ("name", "version", "entries", "threshold")} | {"built": True}
    model_labels = _labels(settings, intent_model)
    bot = support.create_bot(BOT_NAME, intent_model, KB_NAME, storefront=True, replace=True, settings=settings,
                             replies={k: v for k, v in REPLIES.items() if k in model_labels},
                             handoff_intents=[i for i in settings.support_handoff_intents if i in model_labels])
    if not feedback.list_datasets(BOT_NAME, settings=settings):
        feedback.export_dataset(BOT_NAME, base=training_data, settings=settings)
    return {"name": bot["name"], "kb": kb, "dataset": bot["dataset"],
            "datasets": len(feedback.list_datasets(BOT_NAME, settings=settings))}


def _labels(settings: Settings, model: str) -> list[str]:
    from modelshop.registry import Registry

    return list(Registry.from_settings(settings).get(model).labels)
