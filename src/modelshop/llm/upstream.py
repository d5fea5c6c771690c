"""Upstream models: an OpenAI-compatible provider's model (or one of your own vLLM, TGI or llama.cpp
servers) registered under a name of yours, resold through the gateway like a local model.

A version of an upstream model is a folder holding only `modelshop.json`:

    family "upstream", format "upstream", base_url (credentials stripped), upstream_model,
    key_env (the environment variable holding the provider's key, read at call time; never the key),
    cost_input_per_million, cost_output_per_million (Decimal strings: what the provider charges you),
    fallbacks (names tried in order when this one fails before the first byte), timeout_s,
    context_length (or null), tokenizer (what counts prompt tokens locally: a registered generative
    model's name, a folder, or null for an estimate of 4 characters a token)

The provider's key is never stored, logged or returned: only the variable's name is, and
`provider_key` reads it when a call goes out.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
from decimal import Decimal, InvalidOperation
from pathlib import Path

from modelshop.errors import ValidationError
from modelshop.registry import META_FILE, Registry, check_name
from modelshop.settings import Settings, get_settings, provider_secret

FAMILY = "upstream"
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
DEFAULT_TIMEOUT_S = 60.0

__all__ = ["FAMILY", "add_upstream", "clean_url", "provider_key", "upstream_costs", "is_upstream"]


def is_upstream(row) -> bool:
    return getattr(row, "family", None) == FAMILY


def clean_url(url: str) -> str:
    """`url` without user:password@ (never stored nor shown), without a trailing slash; one line if invalid."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f'--upstream "{_safe(url)}" is not an http(s) URL, e.g. https://api.example.com/v1')
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _safe(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password or parts.username:
        return url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1])
    return url


def _cost(value: object, flag: str) -> str:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(f'{flag} "{value}" is not a number; give the provider\'s price per million tokens, '
                              'e.g. 0.15') from None
    if not amount.is_finite() or amount < 0:
        raise ValidationError(f"{flag} must be a price of 0 or more per million tokens, not {value}")
    return str(amount)


def add_upstream(name: str, base_url: str, upstream_model: str, *, key_env: str | None = None,
                 cost_input: object = "0", cost_output: object = "0", fallbacks: list[str] | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, context_length: int | None = None,
                 tokenizer: str | None = None, settings: Settings | None = None,
                 registry: Registry | None = None) -> dict:
    """Register an upstream model as the next version of `name` (the first goes to production)."""
    settings = settings or get_settings()
    registry = registry or Registry.from_settings(settings)
    check_name(name)
    if not upstream_model.strip():
        raise ValidationError("--upstream-model is empty; give the provider's model id, e.g. gpt-4o-mini")
    if key_env is not None and not ENV_RE.match(key_env):
        raise ValidationError(f'--upstream-key-env "{key_env}" is not an environment variable name (the key '
                              "itself is never given here: put it in that variable)")
    if timeout_s <= 0:
        raise ValidationError(f"--timeout must be more than 0 seconds, not {timeout_s}")
    if context_length is not None and context_length < 1:
        raise ValidationError(f"--context-length must be at least 1, not {context_length}")
    fallbacks = [f.strip() for f in (fallbacks or []) if f.strip()]
    for f in fallbacks:
        check_name(f)
        if f == name:
            raise ValidationError(f'--fallback names "{name}" itself; name other models')
    existing = [r for r in registry.list(name) if r.family != FAMILY]
    if existing:
        raise ValidationError(f'"{name}" is already a {existing[0].family} model; choose another name')
    meta = {"family": FAMILY, "format": FAMILY, "base_url": clean_url(base_url), "upstream_model": upstream_model,
            "key_env": key_env, "cost_input_per_million": _cost(cost_input, "--cost-input"),
            "cost_output_per_million": _cost(cost_output, "--cost-output"), "fallbacks": fallbacks,
            "timeout_s": float(timeout_s), "context_length": context_length, "tokenizer": tokenizer}
    build = registry.incoming_dir()
    try:
        (build / META_FILE).write_text(json.dumps(meta, indent=1))
        row = registry.register(name, build, family=FAMILY, format=FAMILY, base_model=upstream_model, labels=[],
                                multi_label=False, metrics={})
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return {"name": row.name, "version": row.version, "stage": row.stage, "kind": "generative", "source": "upstream",
            **{k: v for k, v in meta.items() if k not in ("family", "format")}}


def provider_key(meta: dict) -> str | None:
    """The provider's key from the environment variable the model names (read at call time, never kept)."""
    var = meta.get("key_env")
    return provider_secret(var) if var else None


def upstream_costs(registry: Registry) -> dict[str, tuple[Decimal, Decimal]]:
    """Per upstream model name (its production version): what the provider charges per million input and
    output tokens; for `billing.revenue`'s upstream cost."""
    out = {}
    for row in registry.production():
        if is_upstream(row):
            meta = json.loads((registry.path(row) / META_FILE).read_text())
            out[row.name] = (Decimal(meta["cost_input_per_million"]), Decimal(meta["cost_output_per_million"]))
    return out


def read_meta(path: Path) -> dict:
    return json.loads((path / META_FILE).read_text())
