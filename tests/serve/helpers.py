"""Shared by the serving tests: the admin key, settings for a temp home, toy data, a live server."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

from pydantic import SecretStr

from modelshop.settings import Settings

KEY = "test-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = dict(epochs=2, batch_size=8, learning_rate=1e-3, warmup_ratio=0.0)


def make_settings(home: Path, **overrides) -> Settings:
    base = dict(home=home, progress=False, admin_key=SecretStr(KEY), reload_interval_s=0.0, torch_threads=2,
                serve_gate="admin", default_model=None, auto_truncate=False)
    return Settings(**{**base, **overrides})


def write_toy(folder: Path) -> tuple[Path, Path]:
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc, seconds: float = 90) -> None:
    """Until the server process `proc` answers /health on `port` (fails if it exits or takes too long)."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "server did not come up"
        time.sleep(0.1)


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
