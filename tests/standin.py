"""A stand-in OpenAI-compatible provider for the gateway's tests, served on loopback by `live_server`.

What it does is chosen by the request's `model`:

    ok            answers at once; streamed, its usage comes on a chunk of its own (empty `choices`)
    ok-last       streamed, its usage rides on the last `choices` chunk (the other final-chunk shape)
    no-usage      never reports usage
    fail-500      HTTP 500 with an OpenAI error body
    fail-429      HTTP 429 with Retry-After: 7
    slow          waits 3 s before answering (for timeouts)
    cut           streams three chunks, then drops the connection
    long          streams 400 chunks, 5 ms apart (for clients that leave mid-stream)

Every answer is "w0 w1 w2 …" with `WORDS` words (or `max_tokens` if fewer), and usage says
prompt_tokens=PROMPT_TOKENS, completion_tokens=the words sent: numbers a local count would not give,
so a test can tell the provider's usage from an estimate. It records what it was sent in `seen`
(the Authorization header among it) and the streams that were closed before their end in `closed`.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

PROMPT_TOKENS = 11
WORDS = 6


class Provider:
    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.closed: list[str] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.handle, methods=["POST"]),
                                     Route("/v1/completions", self.handle, methods=["POST"])])

    def count(self, model: str) -> int:
        return sum(1 for s in self.seen if s["body"].get("model") == model)

    async def handle(self, request: Request):
        body = await request.json()
        chat = request.url.path.endswith("/chat/completions")
        self.seen.append({"body": body, "authorization": request.headers.get("authorization"),
                          "path": request.url.path})
        model = body.get("model", "")
        if model == "fail-500":
            return JSONResponse({"error": {"message": "the provider is down", "type": "server_error"}}, 500)
        if model == "fail-429":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, 429,
                                headers={"Retry-After": "7"})
        if model == "slow":
            await asyncio.sleep(3)
        n = 400 if model == "long" else min(WORDS, int(body.get("max_tokens") or WORDS))
        words = [f"w{i} " for i in range(n)]
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n, "total_tokens": PROMPT_TOKENS + n}
        head = {"id": "up-1", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            text = "".join(words)
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                      if chat else {"index": 0, "text": text, "finish_reason": "stop"})
            out = {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice]}
            if model != "no-usage":
                out["usage"] = usage
            return JSONResponse(out)
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(self._stream(head, words, usage, model, chat, include),
                                 media_type="text/event-stream")

    async def _stream(self, head, words, usage, model, chat, include):
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(text, finish=None, **extra):
            choice = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish} if chat \
                else {"index": 0, "text": text, "finish_reason": finish}
            return "data: " + json.dumps({**head, "object": obj, "choices": [choice], **extra}) + "\n\n"

        finished = False
        try:
            if chat:
                yield "data: " + json.dumps({**head, "object": obj, "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}) + "\n\n"
            for i, word in enumerate(words):
                if model == "cut" and i == 3:
                    raise ConnectionAbortedError("the stand-in provider drops the connection")
                if model == "long":
                    await asyncio.sleep(0.005)
                last = i == len(words) - 1
                if last and model == "ok-last" and include:
                    yield chunk(word, "stop", usage=usage)
                else:
                    yield chunk(word)
            if model != "ok-last":
                yield chunk("", "stop")
            if include and model not in ("no-usage", "ok-last"):
                yield "data: " + json.dumps({**head, "object": obj, "choices": [], "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                self.closed.append(model)
