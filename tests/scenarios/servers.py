"""Real `modelshop serve` processes for the crash, two-replica and idempotency scenarios.

`train_tfidf(...)` registers a tfidf model in the current settings' home and database (fast to train, so
the tests spend their time on the server, not on training); `ServerProcess` runs `modelshop serve` on it
in a subprocess with the billing gate, waits for /health, and can be stopped or SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import ADMIN_KEY, START_TIMEOUT_S, free_port, wait_healthy


def train_tfidf(tmp_path: Path, name: str = "m") -> None:
    """Register a tfidf model `name` in the current settings' home and database (production stage)."""
    from modelshop.cli import main

    rows = [{"text": t, "label": label} for t, label in
            [("great product", "good"), ("love it", "good"), ("awful", "bad"), ("terrible, broken", "bad")] * 10]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    main(["train", "--data", str(data), "--eval", str(data), "--base-model", "tfidf", "--name", name, "--json"])


def payg_shop(tmp_path: Path, monkeypatch, url: str, customer: str):
    """A home on database `url` with tfidf model m:1, a pay-as-you-go plan and one customer with a key:
    (db, customer id, key)."""
    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.db import Database
    from modelshop.settings import get_settings

    monkeypatch.setenv("MODELSHOP_DATABASE_URL", url)
    get_settings.cache_clear()
    train_tfidf(tmp_path)
    db = Database(url)
    db.migrate()
    create_plan(db, parse_plan({"code": "payg", "currency": "USD",
                                "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.01"}]}),
                actor="test")
    made = create_customer(db, customer, "payg", actor="test")
    return db, made["id"], create_key(db, made["id"], actor="test")["key"]


class ServerProcess:
    """`modelshop serve` in a subprocess, on a free port."""

    def __init__(self, home: Path, database_url: str, *, redis_url: str | None = None, log: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSHOP_")}
        env.update({"MODELSHOP_HOME": str(home), "MODELSHOP_DATABASE_URL": database_url,
                    "MODELSHOP_SERVE_GATE": "billing", "MODELSHOP_ADMIN_KEY": ADMIN_KEY,
                    "MODELSHOP_PROGRESS": "false", "MODELSHOP_TORCH_THREADS": "1",
                    "MODELSHOP_RELOAD_INTERVAL_S": "0", "TOKENIZERS_PARALLELISM": "false",
                    "HF_HUB_OFFLINE": "1"})
        if redis_url:
            env["MODELSHOP_REDIS_URL"] = redis_url
        env.update(extra_env or {})
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from modelshop.cli import main; main()", "serve", "--port", str(self.port)],
                env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        try:
            wait_healthy(self.port, self.proc, timeout, self.log)
        except RuntimeError:
            self.kill()
            raise
        return self

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no drain — what a crash looks like."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

