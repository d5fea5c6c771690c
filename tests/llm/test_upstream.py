"""`modelshop llm add --upstream …`: an upstream provider's model in the registry, with no credential kept."""

from __future__ import annotations

import json

import pytest

from modelshop.registry import Registry
from tests.llm.test_registry import cli_error, cli_json


def test_add_an_upstream_model_keeps_no_credential(settings, capsys, monkeypatch):
    monkeypatch.setenv("PROVIDER_KEY", "sk-real-secret")
    out = cli_json(capsys, "llm", "add", "--name", "gpt", "--upstream", "https://user:pw@api.example.com/v1/",
                   "--upstream-model", "gpt-4o-mini", "--upstream-key-env", "PROVIDER_KEY", "--cost-input", "0.15",
                   "--cost-output", "0.60", "--fallback", "local,other", "--timeout", "12")
    assert out["base_url"] == "https://api.example.com/v1" and out["stage"] == "production"
    assert (out["cost_input_per_million"], out["cost_output_per_million"]) == ("0.15", "0.60")
    assert out["fallbacks"] == ["local", "other"] and out["timeout_s"] == 12.0 and out["source"] == "upstream"
    registry = Registry.from_settings(settings)
    stored = (registry.path(registry.get("gpt")) / "modelshop.json").read_text()
    assert "pw" not in stored.replace("upstream_model", "") and "sk-real-secret" not in stored
    assert json.loads(stored)["key_env"] == "PROVIDER_KEY"
    listed = cli_json(capsys, "llm", "list")
    assert [(r["name"], r["source"]) for r in listed] == [("gpt", "upstream")]
    assert [r["kind"] for r in cli_json(capsys, "models", "list")] == ["generative"]


@pytest.mark.parametrize("args, says", [
    (["--upstream", "ftp://x", "--upstream-model", "m"], "is not an http(s) URL"),
    (["--upstream", "https://x/v1"], "needs --upstream-model"),
    ([], "give --base-model"),
    (["--upstream", "https://x/v1", "--upstream-model", "m", "--cost-input", "cheap"], "is not a number"),
    (["--upstream", "https://x/v1", "--upstream-model", "m", "--cost-output", "-1"], "0 or more"),
    (["--upstream", "https://x/v1", "--upstream-model", "m", "--upstream-key-env", "sk-abc"], "not an environment"),
    (["--upstream", "https://x/v1", "--upstream-model", "m", "--fallback", "u"], "itself"),
])
def test_bad_upstream_options_get_one_line(settings, capsys, args, says):
    assert says in cli_error(capsys, "llm", "add", "--name", "u", *args)
