"""The one reader of the environment: every `MODELSHOP_*` variable is a field here.

No other module reads `os.environ`; they take a `Settings` (usually from `get_settings()`).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "secret", "admin", "password", "test"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELSHOP_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="production refuses placeholder secrets")
    home: Path = Field(
        Path.home() / ".modelshop",
        description="where the SQLite database, registered models and runs live")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file under home (WAL)")
    redis_url: str | None = Field(
        None, description="Redis URL for rate limits and quotas shared by replicas; default: in-process")
    admin_key: SecretStr | None = Field(
        None, description="bearer key for admin routes; `modelshop demo` makes one when unset")
    metrics_key: SecretStr | None = Field(
        None, description="bearer key that may read /metrics and /info besides the admin key (e.g. for a "
        "Prometheus scraper that should hold no admin power)")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads; default: torch's own choice")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    progress: bool = Field(True, description="show progress bars on stderr")
    # billing (modelshop.billing): metering, limits, serving cost
    billing_group_commit_ms: float = Field(
        2.0, ge=0, le=1000,
        description="window in ms in which concurrent usage records share one transaction (group commit)")
    billing_group_commit_max: int = Field(
        500, ge=1, description="most usage records written in one group-commit transaction")
    key_cache_s: float = Field(
        1.0, ge=0, le=60, description="seconds a server reuses what it read of an API key (status, expiry, "
        "scopes, its customer's status and plan) before reading it again; changes made through the same "
        "process apply at once, others within this time; 0: read on every call")
    idempotency_claim_s: float = Field(
        60.0, gt=0, le=3600, description="seconds an Idempotency-Key stays claimed by a call under way: a "
        "duplicate meanwhile gets 409; a claim left by a server that died is taken over after this")
    rate_limit_prefix: str = Field(
        "modelshop", description="Redis key prefix of rate-limit buckets; one per deployment sharing a Redis")
    rate_limits_when_redis_down: Literal["open", "closed"] = Field(
        "open", description="rpm/tpm limits while MODELSHOP_REDIS_URL cannot be reached: open admits calls "
        "without them (a warning is logged once per outage), closed answers 503")
    quotas_when_redis_down: Literal["open", "closed"] = Field(
        "closed", description="blocking quotas and prepaid wallets while MODELSHOP_REDIS_URL cannot be reached: "
        "closed answers 503 (the calls under way on other replicas are unknown, so a quota or a wallet could be "
        "overspent), open checks them against the ledger alone")
    serving_cost_currency: str = Field("USD", description="currency of the serving_cost_* rates")
    serving_cost_per_compute_second: dict[str, Decimal] = Field(
        default_factory=lambda: {"*": Decimal("0.0001")},
        description='serving cost per second of inference by model (NAME:VERSION, NAME or "*"), '
                    'JSON with decimal strings, e.g. {"*": "0.0001"}')
    serving_cost_per_1k_tokens: dict[str, Decimal] = Field(
        default_factory=dict, description='serving cost per 1000 tokens by model, JSON, e.g. {"minilm": "0.00002"}')
    reseller_default_discount_percent: Decimal = Field(
        Decimal("20"), ge=0, le=100, description="wholesale discount of a reseller created without one")

    # --- serving (modelshop.serve): `modelshop serve`, dynamic batching, limits -----------------
    host: str = Field("127.0.0.1", description="address `modelshop serve` listens on (0.0.0.0: all interfaces)")
    port: int = Field(8000, ge=1, le=65535, description="port `modelshop serve` listens on")
    default_model: str | None = Field(
        None, description="model served when a request names none and more than one is in production")
    serve_gate: Literal["admin", "billing"] = Field(
        "billing", description="who may call: billing = customer keys (and MODELSHOP_ADMIN_KEY), limits, quotas "
        "and the usage ledger (modelshop.billing.BillingGate); admin = only MODELSHOP_ADMIN_KEY, nothing metered")
    max_batch_tokens: int = Field(
        16384, ge=1, description="token budget of one batch, counted padded: longest input × inputs")
    max_batch_requests: int = Field(
        64, ge=1, description="most inputs in one batch, whatever their length")
    max_concurrent_requests: int = Field(
        512, ge=1, description="requests in flight at once; past this new ones get 429 (never an unbounded queue)")
    serve_workers: int | None = Field(
        None, ge=1, le=64, description="batches one served model runs at once (its model workers); default: "
        "one per CPU core up to 4 (each with cores ÷ workers torch threads), 1 on a GPU")
    serve_processes: bool | None = Field(
        None, description="run a served PyTorch model's workers in processes of their own (each with its own "
        "copy of the model), so no forward pass waits on the HTTP event loop's GIL; default: yes on a CPU "
        "with more than one worker, no on a GPU; ONNX and tfidf models always run on threads")
    max_wait_ms: float = Field(
        0.0, ge=0, description="how long a free model waits for more inputs before running a small batch; "
        "0: run what is queued at once (as text-embeddings-inference does)")
    auto_truncate: bool = Field(
        False, description="truncate inputs longer than the model's max length instead of answering 413")
    max_input_chars: int = Field(
        100_000, ge=1, description="longest text accepted, in characters (413 above)")
    max_inputs_per_request: int = Field(
        256, ge=1, description="most texts in one request (413 above); larger jobs use batch scoring")
    max_request_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="largest request body accepted, in bytes (413 above)")
    reload_interval_s: float = Field(
        1.0, ge=0, description="how often a request checks the registry for a newly promoted version "
        "(0: on every request); the new one loads in a thread and is swapped in when ready")
    embedding_model: str = Field(
        "minilm", description="weights behind /v1/embeddings: minilm (all-MiniLM-L6-v2) or a local folder")
    explain_steps: int = Field(
        16, ge=2, le=512, description="integrated-gradients steps per /explain call (more: closer, slower)")

    # --- generative models (modelshop.llm, served by modelshop.serve.generation) --------------------
    llm_max_batch: int = Field(
        16, ge=1, le=256, description="sequences a generative model decodes at once (its running batch)")
    llm_max_waiting: int = Field(
        64, ge=0, description="sequences that may wait for a place in the running batch; past running + "
        "waiting, new requests get 429 with Retry-After (never an unbounded queue)")
    llm_prefill_tokens: int = Field(
        256, ge=16, description="prompt tokens prefilled per engine step; a longer prompt is prefilled in "
        "chunks between decoding steps, so it never stalls the sequences already generating")
    llm_threads: int | None = Field(
        None, ge=1, description="torch threads of a generative model's engine; default: every core")
    llm_processes: bool | None = Field(
        None, description="run each generative model's engine in a process of its own (no forward pass waits "
        "on the HTTP event loop's GIL); default: yes on a CPU, no on a GPU")
    llm_max_tokens: int = Field(
        512, ge=1, description="max_tokens of a completion request that names none (capped by the context)")

    # --- applications (modelshop.apps): FAQ answering, support bot, feedback, recommendation ------
    faq_exact_max_entries: int = Field(
        100_000, ge=1, description="knowledge bases with more entries also get an approximate HNSW index "
        "(faiss) and answer from it; up to this many, exact search with numpy")
    faq_threshold_floor: float = Field(
        0.5, ge=0, le=1, description="lowest confidence threshold a knowledge base is calibrated to "
        "(minilm cosine; off-topic questions rarely score above it)")
    faq_threshold_quantile: float = Field(
        0.95, gt=0, lt=1, description="a KB's threshold is this quantile of the best scores that the bundled "
        "off-topic probe questions reach in it (never below faq_threshold_floor)")
    support_min_confidence: float = Field(
        0.5, ge=0, le=1, description="intent confidence below which a bot's reply counts as unsure: "
        "the message goes to the labelling queue (default of `modelshop apps bot create`)")
    support_handoff_intents: list[str] = Field(
        default_factory=lambda: ["complaint", "human_agent"],
        description='intents that hand the conversation to a person, JSON list (default of bot create)')
    support_handoff_phrases: list[str] = Field(
        default_factory=lambda: ["talk to a human", "speak to a human", "real person", "human agent",
                                 "talk to a person", "speak to a person", "live agent", "customer service rep",
                                 "转人工", "人工客服", "找人工", "真人客服", "人工服务"],
        description="phrases (English/Chinese, case-insensitive) that hand the conversation to a person, JSON list")
    support_max_unsure_turns: int = Field(
        2, ge=1, description="consecutive unsure replies after which a bot hands the session to a person")
    label_down_rating: int = Field(
        2, ge=1, le=4,
        description="ratings 1..5 at or below this (and \"down\") put the message in the labelling queue")
    recommend_cf_max_items: int = Field(
        10_000, ge=10, description="collaborative filtering (EASE) covers this many most-interacted items; the "
        "rest are ranked by their text alone (memory grows with its square)")

    # --- channels and storefront (modelshop.channels, modelshop.web) -----------------------------
    attribution_model: Literal["first", "last"] = Field(
        "first", description="which touch binds a new customer to its channel: the first or the last one "
        "inside the attribution window")
    attribution_window_days: int = Field(
        60, ge=1, le=3650, description="touches older than this many days before signup are not used; "
        "also the lifetime of the storefront's visitor cookie")
    channels_currency: str = Field(
        "USD", description="currency of channel reports: invoices, costs and commissions in other "
        "currencies are left out of them")
    channels_churn_floor: Decimal = Field(
        Decimal("0.02"), gt=0, le=1, description="lowest monthly churn used in LTV, so a channel that lost "
        "no customer yet does not get an infinite LTV (0.02: LTV counts at most 50 months)")
    commission_hold_days: int = Field(
        30, ge=0, le=365, description="days a commission waits after its invoice is paid before approval "
        "(the refund window), for rules created without their own")
    storefront_plans: list[str] | None = Field(
        None, description='plan codes offered on the storefront (pricing table and signup), JSON list, '
        'e.g. ["free", "payg"]; default: every plan')
    storefront_demo_rpm: int = Field(
        10, ge=1, description="playground calls per minute per visitor (the demo principal's own tight limit)")
    storefront_demo_global_rpm: int = Field(
        120, ge=1, description="playground calls per minute for all storefront visitors together")
    storefront_demo_max_chars: int = Field(
        500, ge=1, description="longest text the playground accepts, in characters")
    storefront_signup_rpm: int = Field(
        3, ge=1, description="storefront signups per minute from one client address (each makes a customer and a key)")
    storefront_address_rpm: int = Field(
        60, ge=1, description="storefront calls per minute from one client address, all its visitors together, "
        "for each of: playground, chat messages, chat ratings, chat session reads and new visitors' page views "
        "(a visitor that drops or forges its cookie gets no fresh budget)")
    secret_key: SecretStr | None = Field(
        None, description="server secret that signs the storefront's visitor ids and form tokens (HMAC-SHA256), "
        "at least 16 characters, the same on every replica; default: a random one made once and kept in "
        "home/secret_key (mode 0600)")
    proxy_hops: int = Field(
        0, ge=0, le=8, description="reverse proxies in front of the server that append the client's address to "
        "X-Forwarded-For; the address limits use the one the outermost proxy saw; 0: the connection's address, "
        "X-Forwarded-For ignored (a client can write anything there)")
    console_cookie_secure: bool | None = Field(
        None, description="mark the console's session cookie Secure (the browser sends it over HTTPS only); "
        "default: Secure unless MODELSHOP_ENV=development and MODELSHOP_HOST is a loopback address (127.0.0.1, "
        "localhost, ::1), and always on a request that came over HTTPS; false: let a plain-HTTP console work "
        "from other machines (never in production: the cookie could then be read on the network)")

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        for name, key in (("ADMIN_KEY", self.admin_key), ("METRICS_KEY", self.metrics_key)):
            if self.env == "production" and key is not None and key.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"MODELSHOP_{name} is a placeholder; set a real secret in production")
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 16:
            raise ValueError("MODELSHOP_SECRET_KEY is shorter than 16 characters; use a long random one, e.g. "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or unset it")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'modelshop.db'}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def provider_secret(variable: str) -> str | None:
    """The value of the environment variable an upstream model names for its provider's key, read when a
    call goes out (never stored: the registry keeps only the variable's name)."""
    import os

    return os.environ.get(variable) or None
