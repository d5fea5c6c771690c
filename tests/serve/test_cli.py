"""`modelshop serve`: one-line refusals, and real starts that print the URL and answer (also with nothing
registered yet, and with customer keys by default)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelshop.cli import main
from modelshop.settings import get_settings
from modelshop.train import TrainConfig, run_training
from tests.support import ADMIN_KEY, AUTH, customer_key, free_port, wait_healthy


def one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


def serve_command(port: int, env: dict) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("modelshop")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from modelshop.cli import main; main()"]
    return subprocess.Popen([*cmd, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_admin_only_serving_refuses_without_an_admin_key(settings, monkeypatch, toy_files, capsys):
    monkeypatch.setenv("MODELSHOP_SERVE_GATE", "admin")
    get_settings.cache_clear()
    run_training(toy_files[0], toy_files[1], name="fast", settings=settings, cfg=TrainConfig(base_model="tfidf"))
    err = one_line_error(capsys, ["serve"])
    assert "MODELSHOP_ADMIN_KEY is not set" in err and "MODELSHOP_SERVE_GATE" in err


def test_plain_serve_starts_with_nothing_registered_and_takes_customer_keys(settings, toy_files):
    """No classifier yet and no admin key: it starts; a customer's key gets in (the billing gate is the
    default) and hears how to train a model; one trained meanwhile is served without a restart."""
    customer = customer_key(settings)
    key = customer["Authorization"].removeprefix("Bearer ")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MODELSHOP_ADMIN_KEY", "MODELSHOP_SERVE_GATE")}
    proc = serve_command(port, {**env, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving no model yet at {url}"), line
        assert "modelshop train" in proc.stdout.readline()
        wait_healthy(port, proc, 60)
        assert httpx.get(f"{url}/health").json()["models"] == {}
        r = httpx.post(f"{url}/predict", json={"inputs": "terrible, broken"}, headers=customer)
        assert r.status_code == 404 and "no model is in production yet" in r.json()["error"], r.text
        assert "modelshop train --data FILE --name NAME" in r.json()["error"]
        r = httpx.post(f"{url}/models/fast", json={"inputs": "terrible"}, headers=customer)
        assert r.status_code == 404 and "modelshop train" in r.json()["error"], r.text
        run_training(toy_files[0], toy_files[1], name="fast", settings=settings, cfg=TrainConfig(base_model="tfidf"))
        # the first call loads the new version (no restart): give a loaded machine time for it
        r = httpx.post(f"{url}/models/fast", json={"inputs": "terrible, broken"}, headers=customer, timeout=60)
        assert r.status_code == 200 and r.json()[0][0]["label"] == "bad", r.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert key not in proc.stdout.read()


def test_optimize_needs_data(settings, capsys):
    err = one_line_error(capsys, ["optimize", "--model", "x", "--int8"])
    assert "--data is required" in err


def test_serve_command_prints_the_url_and_serves(fresh_settings):
    port = free_port()
    env = {**os.environ, "MODELSHOP_HOME": str(fresh_settings.home), "MODELSHOP_ADMIN_KEY": ADMIN_KEY,
           "PYTHONUNBUFFERED": "1", "MODELSHOP_PROGRESS": "false"}
    proc = serve_command(port, env)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving fast:1 at http://127.0.0.1:{port}"), line
        wait_healthy(port, proc, 60)
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": "terrible, broken"}, headers=AUTH)
        assert r.status_code == 200 and r.json()[0]["label"] == "bad"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert ADMIN_KEY not in proc.stdout.read()  # keys are never logged
