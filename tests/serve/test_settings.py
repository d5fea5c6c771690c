"""Every serving setting is documented and reachable from the environment."""

from __future__ import annotations

from modelshop.settings import Settings

SERVING = ("host", "port", "default_model", "serve_gate", "max_batch_tokens", "max_batch_requests",
           "max_concurrent_requests", "max_wait_ms", "auto_truncate", "max_input_chars", "max_inputs_per_request",
           "max_request_bytes", "reload_interval_s", "embedding_model", "explain_steps", "metrics_key",
           "rate_limits_when_redis_down", "quotas_when_redis_down")


def test_serving_settings_have_help_text_and_env_names(monkeypatch):
    for name in SERVING:
        field = Settings.model_fields[name]
        assert field.description and len(field.description) > 15, name
    monkeypatch.setenv("MODELSHOP_MAX_BATCH_TOKENS", "4096")
    monkeypatch.setenv("MODELSHOP_AUTO_TRUNCATE", "true")
    s = Settings()
    assert s.max_batch_tokens == 4096 and s.auto_truncate is True
