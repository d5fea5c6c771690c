"""What the test packages share: the keys, one settings builder, toy data, plans, the gate driven as the
server drives it, free ports and live servers.

Fixtures stay in the conftest.py files (pytest finds them there) and call these. A test imports shared
helpers from here, never from another package's conftest; a helper that one package alone needs stays
in that package (tests/billing/races.py, tests/scenarios/servers.py, tests/web/helpers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelshop.billing.accounts import create_plan
from modelshop.billing.plans import load_plan_file, parse_plan
from modelshop.db import Database
from modelshop.errors import ModelshopError
from modelshop.gate import Call, StoredReply, Units
from modelshop.settings import Settings

# --- keys ---------------------------------------------------------------------------------------

ADMIN_KEY = "adm_test_" + "k" * 32        # MODELSHOP_ADMIN_KEY of every test's settings and server
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
ACTOR = "test"                            # who made the library calls of a test, as the audit log says


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- settings -----------------------------------------------------------------------------------

def make_settings(home: Path, **overrides) -> Settings:
    """Settings on `home` as the in-process tests want them: the test admin key, no progress bars, the
    registry read on every request, two torch threads, and the admin-only gate (nothing metered, no
    customers to make); tests of billing pass serve_gate="billing"."""
    base = dict(home=home, progress=False, admin_key=SecretStr(ADMIN_KEY), reload_interval_s=0.0, torch_threads=2,
                serve_gate="admin", default_model=None, auto_truncate=False)
    return Settings(**{**base, **overrides})


# --- data ---------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
FAST = dict(epochs=2, batch_size=8, learning_rate=1e-3, warmup_ratio=0.0)   # the tiny BERT learns toy data in seconds


def shared_dataset(*parts: str) -> Path:
    """A file under ../shared/datasets, or skip: a user's clone has no ../shared beside it."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/datasets/{'/'.join(parts)} (present in CI, not in a plain clone)")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """`rows` as a UTF-8 JSONL file (non-ASCII text kept as is)."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_toy(folder: Path) -> tuple[Path, Path]:
    """A small separable good/bad problem as (train, eval) JSONL files in `folder`."""
    pos = ["great product, works well", "love it, fast delivery", "excellent service thank you",
           "very happy with the quality", "superb, would buy again", "fantastic support team"]
    neg = ["broken on arrival, terrible", "awful service, never again", "refund me now, it is useless",
           "very bad quality, disappointed", "late delivery and rude staff", "the worst purchase ever"]
    rows = [{"text": t, "label": "good"} for t in pos] + [{"text": t, "label": "bad"} for t in neg]
    folder.mkdir(parents=True, exist_ok=True)
    train, evaluation = folder / "train.jsonl", folder / "eval.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows * 3) + "\n")
    evaluation.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return train, evaluation


SHOP_FAQ = [
    ("returns", "How do I return an item?", "You can return any unused item within 30 days. Print the prepaid "
     "label from your order page and drop the parcel at any post office."),
    ("shipping-time", "How long does shipping take?", "Standard shipping takes 3-5 working days within the "
     "country. Express shipping arrives the next working day if you order before 2 pm."),
    ("password", "How do I reset my password?", "Click 'Forgot password' on the login page and follow the link "
     "we e-mail you. The link is valid for one hour."),
    ("hours", "When is your customer service open?", "Our team answers chats and calls Monday to Friday from "
     "9:00 to 18:00."),
    ("gift-cards", "Do you sell gift cards?", "Yes. Digital gift cards from 10 to 200 euros are sent by e-mail "
     "and never expire."),
    ("abroad", "Do you ship abroad?", "We ship to all EU countries and to Norway and Switzerland. Customs fees "
     "outside the EU are paid by the buyer."),
    ("sizes", "How do I find my size?", "Each product page has a size chart in centimetres. If you are between "
     "two sizes, pick the larger one."),
    ("payment", "Which payment methods do you accept?", "We accept Visa, Mastercard, PayPal and bank transfer. "
     "Invoices are available for business customers."),
]


def write_faq(path: Path, rows=SHOP_FAQ, keys=("id", "q", "a")) -> Path:
    """A knowledge-base file (JSONL, one question and answer a line) of a small shop."""
    path.write_text("".join(json.dumps(dict(zip(keys, r))) + "\n" for r in rows))
    return path


# --- plans and periods ----------------------------------------------------------------------------

PLANS = {
    # graduated, with free units and a base fee: a subscription with included units and overage
    "grad": """
code: grad
currency: USD
interval: month
base_fee: "10.00"
charges:
  - metric: requests
    model: graduated
    free_units: 50
    tiers:
      - {up_to: 100, unit_price: "0.05003"}
      - {up_to: null, unit_price: "0.020012"}
""",
    "vol": """
code: vol
currency: USD
charges:
  - metric: tokens
    model: volume
    tiers:
      - {up_to: 1000, unit_price: "0.001"}
      - {up_to: 5000, unit_price: "0.00087"}
      - {up_to: null, unit_price: "0.0005"}
""",
    "pack": """
code: pack
currency: USD
charges:
  - metric: characters
    model: package
    free_units: 5000
    package_size: 1000
    package_price: "0.75"
""",
    "free": """
code: free
currency: USD
quota: {metric: requests, limit: 5, action: block}
""",
    "prepaid": """
code: prepaid
currency: USD
prepaid: true
charges:
  - {metric: requests, model: unit, unit_price: "0.40"}
""",
}


def write_plans(folder: Path) -> dict[str, Path]:
    """Each plan of PLANS as a YAML file in `folder`, by code."""
    paths = {}
    for code, text in PLANS.items():
        paths[code] = folder / f"{code}.yaml"
        paths[code].write_text(text)
    return paths


def make_plans(db: Database, plan_files: dict[str, Path], *codes: str) -> None:
    """Create the plans `codes` from their files (the `plan_files` fixture)."""
    for code in codes:
        create_plan(db, load_plan_file(plan_files[code]), actor=ACTOR)


def make_plan(db: Database, code: str, base_fee: str | None = None, unit_price: str | None = None) -> None:
    """Create a monthly USD plan `code`: a base fee, a price per request, both or neither."""
    spec = {"code": code, "currency": "USD"}
    if base_fee is not None:
        spec["base_fee"] = base_fee
    if unit_price is not None:
        spec["charges"] = [{"metric": "requests", "model": "unit", "unit_price": unit_price}]
    create_plan(db, parse_plan(spec), actor=ACTOR)


def customer_key(settings: Settings, plan: str = "free") -> dict[str, str]:
    """A customer on one of the demo's plans (free: a blocking quota of 1000 requests) and its key, as headers."""
    import modelshop.demo
    from modelshop.billing.accounts import create_customer
    from modelshop.billing.keys import create_key
    from modelshop.db import get_database

    db = get_database(settings)
    create_plan(db, load_plan_file(Path(modelshop.demo.__file__).parent / "plans" / f"{plan}.yaml"), actor=ACTOR)
    return bearer(create_key(db, create_customer(db, "Acme", plan, actor=ACTOR)["id"], actor=ACTOR)["key"])


def month_start(offset: int, today: dt.datetime | None = None) -> dt.datetime:
    """The first instant of the month `offset` months from this one (UTC)."""
    today = today or dt.datetime.now(dt.UTC)
    index = today.year * 12 + today.month - 1 + offset
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def period(offset: int) -> str:
    """The billing period ("YYYY-MM") `offset` months from this one."""
    return month_start(offset).strftime("%Y-%m")


# --- the gate, driven as the server drives it ---------------------------------------------------

async def serve_call(gate, token: str | None, model: str = "minilm:1", units: Units = Units(),
                     idempotency_key: str | None = None, route: str = "/predict", body: str = "body-0",
                     infer=None):
    """One request handled the way the server handles it: authenticate, then one metered block (the key
    claimed → admit → (infer) → record; what was held given back on leaving). `body` stands for the
    request's fingerprint (same body: same request).

    Returns ("ok" | "replayed", StoredReply) or (status code, error).
    """
    request_id = uuid.uuid4().hex
    try:
        principal = await gate.authenticate(token)
        async with gate.metered(principal, route, idempotency_key=idempotency_key, fingerprint=body,
                                request_id=request_id) as m:
            if m.replay is not None:
                return "replayed", m.replay
            await m.admit(model, units)
            if infer is not None:
                await infer()
            reply = StoredReply(200, json.dumps({"request_id": request_id, "tokens": units.tokens}).encode(),
                                {"x-request-id": request_id, "content-type": "application/json"})
            sent = await m.record(Call(request_id, route, model, units, inference_seconds=0.0125), reply)
            return ("ok" if sent is reply else "replayed"), sent
    except ModelshopError as e:
        return e.status_code, e


async def gather_in_chunks(coros, size: int = 50) -> list:
    """`asyncio.gather` over `coros`, `size` at a time (what one test client keeps in flight)."""
    out = []
    for i in range(0, len(coros), size):
        out.extend(await asyncio.gather(*coros[i:i + size]))
    return out


# --- ports, servers, Redis ----------------------------------------------------------------------

START_TIMEOUT_S = 90.0   # generous: two cores shared with other work; a start normally takes a few seconds
REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc, seconds: float = START_TIMEOUT_S, log: Path | None = None) -> None:
    """Until the server process `proc` answers /health on `port`; RuntimeError (with the tail of its `log`)
    if it exits first or takes longer than `seconds`."""
    import httpx

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer /health within {seconds:.0f} s: {tail()}")


@contextlib.contextmanager
def live_server(app):
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def redis_url_or_skip() -> str:
    """The Redis on 127.0.0.1:6379, or skip with the reason (the `redis_url` fixture)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379 ({type(e).__name__})")
    finally:
        client.close()
    return REDIS_URL


# --- a tiny generative model -----------------------------------------------------------------

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TINY_CORPUS = (
    "Hello! How can I help you today? Your order has shipped and will arrive on Monday. "
    "To reset your password, open Settings and choose Security. Refunds take five business days. "
    'The answer is {"name": "Ada", "age": 36, "tags": ["a", "b"], "ok": true, "score": 0.5, "x": null}. '
    "Thank you for your patience; a person from our team will reply soon. 0123456789 []{}:,\"'.-_ "
    "the quick brown fox jumps over the lazy dog. ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz")


def build_tiny_llama(folder: Path, *, seed: int = 0, layers: int = 2, hidden: int = 64,
                     max_positions: int = 512) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer (~400 pieces, every byte reachable) and a
    ChatML chat template, saved as a Hugging Face folder: fast to load, real code paths."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TINY_CORPUS] * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         # untied, wide init: varied greedy output (tied tiny models repeat one token),
                         # with choices far from ties
                         tie_word_embeddings=False, initializer_range=0.2)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
