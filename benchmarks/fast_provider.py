"""A fast stand-in OpenAI-compatible provider for `gateway_load.py`: a bare ASGI app that answers at once.

tests/standin.py is the provider the gateway's tests talk to (failures, timeouts, cut streams); this
one does one thing, as cheaply as Python can, so a load test measures the proxy in front of it and
not the provider: `POST /v1/chat/completions`, plain JSON or (`stream: true`) server-sent events,
one body message per event so a proxy sees real chunks to relay:

    a role chunk, WORDS content chunks ("w0 " … ), a finishing chunk, then — when the request asks
    `stream_options.include_usage` — a usage chunk with empty `choices`, and `data: [DONE]`

Usage says prompt_tokens=PROMPT_TOKENS and completion_tokens=WORDS (numbers no local count would
give, so a ledger row can be told from an estimate). `GET /health` answers 200. Run it in its own
process (`python benchmarks/fast_provider.py --port P`), under uvicorn with uvloop and httptools when
installed, so it never shares a GIL with the proxy or the load generator.
"""

from __future__ import annotations

import argparse
import json
import time

PROMPT_TOKENS = 11
WORDS = 8
MODEL = "bench-upstream"

_USAGE = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": WORDS, "total_tokens": PROMPT_TOKENS + WORDS}
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# every answer is the same, so each is built once; only `created` would differ, and nobody reads it
PLAIN = json.dumps({"id": "up-1", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant",
                                                         "content": "".join(f"w{i} " for i in range(WORDS))},
                                 "finish_reason": "stop"}],
                    "usage": _USAGE}, separators=(",", ":")).encode()
STREAM = ([_event(_chunk({"role": "assistant", "content": ""}))]
          + [_event(_chunk({"content": f"w{i} "})) for i in range(WORDS)]
          + [_event(_chunk({}, "stop"))])
USAGE_CHUNK = _event({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                      "choices": [], "usage": _USAGE})
DONE = b"data: [DONE]\n\n"


async def _body(receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def app(scope, receive, send) -> None:
    """The whole provider (lifespan events are acknowledged; anything but the two routes is a 404)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": _JSON})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        return
    if method != "POST" or path != "/v1/chat/completions":
        await send({"type": "http.response.start", "status": 404, "headers": _JSON})
        await send({"type": "http.response.body", "body": b'{"error":{"message":"not found"}}'})
        return
    body = json.loads(await _body(receive))
    if not body.get("stream"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": _JSON + [(b"content-length", str(len(PLAIN)).encode())]})
        await send({"type": "http.response.body", "body": PLAIN})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _SSE})
    events = STREAM + ([USAGE_CHUNK] if (body.get("stream_options") or {}).get("include_usage") else []) + [DONE]
    for event in events[:-1]:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": events[-1]})


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                backlog=4096)   # loop and http default to uvloop and httptools when they are installed


if __name__ == "__main__":
    main()
