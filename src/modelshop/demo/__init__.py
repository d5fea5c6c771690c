"""`modelshop demo`: the whole path on embedded defaults, from the bundled dataset to a result.

profile → train `minilm` → evaluate beside tfidf → register (production) → plans, a demo customer
and its key → two sales channels with attributed customers and their usage → the support bot of
the storefront's chat widget (FAQ knowledge base + the intent model + hand-off) → the generative model
`smollm2` (registered once, priced per token) → serve both with metering, printing `curl` lines and an
`openai` snippet that work. Running it again adds a model version and
nothing else twice: the demo customer keeps the key the first run showed (`new_key` rotates it).
May import every other part: it is the one place that strings them together.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from modelshop.settings import Settings, get_settings

DATA = Path(__file__).parent / "data" / "support_messages.jsonl"
MODEL_NAME = "support-intent"
LLM_NAME = "smollm2"     # the demo plans price this model's tokens


def run_demo(settings: Settings | None = None, *, epochs: int = 8, base_model: str = "minilm",
             serve: bool = True, new_key: bool = False, llm: str | None = "smollm2",
             say: Callable[[str], None] = print) -> dict:
    """Run the demo pipeline and return what it made (also said step by step through `say`)."""
    from modelshop.data import load_dataset, profile_dataset, write_report
    from modelshop.train import TrainConfig, run_training
    from modelshop.train.base_models import load_tokenizer

    settings = settings or get_settings()
    say(f"modelshop home: {settings.home}")
    ds = load_dataset(DATA)
    tokenizer = load_tokenizer(base_model) if base_model != "tfidf" else None
    profile = profile_dataset(ds, tokenizer, base_model=base_model)
    report = write_report(profile, settings.home / "reports" / "demo-data", title="Demo data: support messages")
    say(f"[1/6] profiled {profile['rows']} messages, {profile['num_labels']} labels "
        f"(imbalance {profile['imbalance_ratio']}:1), PII found: {profile['pii'] or 'none'} → {report}")
    for warning in profile.get("warnings", []):
        if "pieces are" in warning:   # a language the base model's tokenizer covers poorly
            say(f"      warning: {warning}")
    say(f"[2/6] fine-tuning {base_model} beside the tfidf baseline ({epochs} epochs)…")
    # small data: a higher rate and more passes; early stopping ends it when validation F1 stalls
    cfg = TrainConfig(base_model=base_model, epochs=epochs, learning_rate=2e-4, batch_size=16)
    result = run_training(ds, name=MODEL_NAME, cfg=cfg, settings=settings)
    b = result.get("baseline") or {}
    say(f"[3/6] registered {result['name']}:{result['version']} ({result['stage']}): "
        f"macro-F1 {result['macro_f1']:.3f}, accuracy {result['accuracy']:.3f}"
        + (f"; tfidf macro-F1 {b['macro_f1']:.3f}" if b else ""))
    say(f"      recommended: {result['recommended']}: {result['reason']}")
    say(f"      model card: {result['card']}")
    for title, path in result["charts"].items():
        say(f"      {title}: {path}")
    from modelshop.db import get_database
    from modelshop.demo.bot import seed_bot
    from modelshop.demo.commerce import describe_key, seed_billing, seed_channels
    from modelshop.inference import load_predictor
    from modelshop.registry import Registry

    db = get_database(settings)
    commerce = seed_billing(db, new_key=new_key)
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else secrets.token_urlsafe(24)
    say(f"[4/6] plans {', '.join(commerce['plans'])}; customer {commerce['customer_id']} on payg")
    say(f"      {describe_key(commerce)}")
    say(f"      admin key: {admin_key}" + ("" if settings.admin_key else " (set MODELSHOP_ADMIN_KEY to keep one)"))
    ref = f"{result['name']}:{result['version']}"
    registry = Registry.from_settings(settings)
    predictor = load_predictor(registry.path(registry.get(ref)), threads=settings.torch_threads)
    sold = seed_channels(db, settings, predictor=predictor, model_ref=ref, texts=list(ds.texts))
    del predictor  # the server loads its own copy
    for ch in sold:
        say(f"      channel {ch['code']} ({ch['kind']}): {len(ch['customers'])} customers with usage")
    bot = seed_bot(settings, MODEL_NAME, DATA)
    say(f"[5/6] support bot {bot['name']}: FAQ {bot['kb']['name']}:{bot['kb']['version']} "
        f"({bot['kb']['entries']} answers), intents from {MODEL_NAME}, hand-off to a person; "
        f"on the storefront's chat widget")
    generative = seed_llm(settings, llm, say) if llm else None
    out = {"profile": profile, "report": str(report), "train": result, **commerce, "channels": sold, "bot": bot,
           "llm": generative}
    if serve:
        from modelshop.platform import run
        from modelshop.serve.direct_models import unload

        unload()  # the knowledge base's embedder, loaded here to build it: the server serves its own
        served = settings.model_copy(update={"serve_gate": "billing", "admin_key": SecretStr(admin_key)})
        url = f"http://{served.host}:{served.port}"
        # a reused key is not known here (only its hash is kept): the lines read it from $DEMO_KEY
        auth = f"'Authorization: Bearer {commerce['key']}'" if commerce["key"] else '"Authorization: Bearer $DEMO_KEY"'
        say("try it (metered on the demo customer's usage)"
            + ("" if commerce["key"] else "; first `export DEMO_KEY=` the key the first run showed") + ":")
        say(f"  curl -s {url}/predict -H {auth} "
            "-H 'Content-Type: application/json' -d '{\"inputs\": \"my parcel has not arrived yet\"}'")
        if generative:
            say(f"  curl -N {url}/v1/chat/completions -H {auth} -H 'Content-Type: application/json' "
                f"-d '{{\"model\": \"{LLM_NAME}\", \"stream\": true, \"stream_options\": {{\"include_usage\": true}}, "
                "\"messages\": [{\"role\": \"user\", \"content\": \"How do I reset my password?\"}]}'")
            key = commerce["key"] or "$DEMO_KEY"
            say("  python (pip install openai):")
            say("    from openai import OpenAI")
            say(f'    client = OpenAI(base_url="{url}/v1", api_key="{key}")')
            say(f'    print(client.chat.completions.create(model="{LLM_NAME}", messages=[{{"role": "user", '
                '"content": "Where is my parcel?"}]).choices[0].message.content)')
        say(f"  curl -s {url}/v1/account/usage -H {auth}")
        say(f"storefront: {url}/store (chat with the bot there)    console: {url}/console (log in with the admin key)")
        say(f"labelling queue (answers visitors rated down): {url}/console/labels")
        run(served, say=say)
    return out


def seed_llm(settings: Settings, base_model: str, say: Callable[[str], None]) -> dict:
    """Register the demo's generative model once (a rerun keeps the version it converted)."""
    from modelshop.llm.registry import add_local, summary
    from modelshop.registry import Registry

    registry = Registry.from_settings(settings)
    current = [r for r in registry.list(LLM_NAME) if r.stage == "production" and r.base_model == base_model]
    if current:
        row = current[-1]
        made = {**summary(row, registry.meta(row)), "registered": False}
    else:
        say(f"      converting {base_model} for serving (once; about half a minute)…")
        made = {**add_local(LLM_NAME, base_model, settings=settings, registry=registry), "registered": True}
    say(f"[6/6] generative model {made['name']}:{made['version']} ({made['architecture']}, "
        f"{made['parameters'] / 1e6:.0f} M parameters, context {made['context_length']}): "
        "OpenAI-compatible at /v1/chat/completions, priced per input and output token")
    return made
