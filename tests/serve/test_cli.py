"""`modelshop serve`: one-line refusals, and a real start that prints its URL and answers."""

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

from .helpers import AUTH, KEY, free_port, wait_healthy


def one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


def test_serve_refuses_when_no_model_is_registered(settings, monkeypatch, capsys):
    monkeypatch.setenv("MODELSHOP_ADMIN_KEY", KEY)
    get_settings.cache_clear()
    err = one_line_error(capsys, ["serve", "--port", "8999"])
    assert "no model is registered" in err and "modelshop train" in err


def test_serve_refuses_without_an_admin_key(settings, toy_files, capsys):
    run_training(toy_files[0], toy_files[1], name="fast", settings=settings, cfg=TrainConfig(base_model="tfidf"))
    err = one_line_error(capsys, ["serve"])
    assert "MODELSHOP_ADMIN_KEY is not set" in err


def test_optimize_needs_data(settings, capsys):
    err = one_line_error(capsys, ["optimize", "--model", "x", "--int8"])
    assert "--data is required" in err


def test_serve_command_prints_the_url_and_serves(fresh_settings):
    port = free_port()
    env = {**os.environ, "MODELSHOP_HOME": str(fresh_settings.home), "MODELSHOP_ADMIN_KEY": KEY,
           "PYTHONUNBUFFERED": "1", "MODELSHOP_PROGRESS": "false"}
    exe = Path(sys.executable).with_name("modelshop")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from modelshop.cli import main; main()"]
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving fast:1 at http://127.0.0.1:{port}"), line
        wait_healthy(port, proc, 60)
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": "terrible, broken"}, headers=AUTH)
        assert r.status_code == 200 and r.json()[0]["label"] == "bad"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert KEY not in proc.stdout.read()  # keys are never logged
