"""`modelshop serve`'s steps (put together by `modelshop.platform.run`): refuse to start when no request
could get in, print what is served and the URL, run uvicorn.

A server starts with whatever is registered, even nothing (an FAQ knowledge base, the storefront and
the billing API need no classifier): a model registered later is served without a restart, and
until then the model routes answer 404 saying how to train one."""

from __future__ import annotations

from collections.abc import Callable

from modelshop.errors import ValidationError
from modelshop.registry import Registry
from modelshop.settings import Settings


def preflight(settings: Settings) -> list[str]:
    """The production versions that will be served (maybe none), or a one-line error saying what to do first."""
    if settings.serve_gate == "admin" and settings.admin_key is None:
        raise ValidationError("MODELSHOP_SERVE_GATE=admin but MODELSHOP_ADMIN_KEY is not set, so no request could "
                              "get in; set it to the bearer key clients will send (or drop MODELSHOP_SERVE_GATE "
                              "to take customer keys)")
    return [r.ref for r in Registry.from_settings(settings).production()]


def announce(settings: Settings, refs: list[str], say: Callable[[str], None] = print) -> None:
    """What is served and where (and how to train a model when there is none)."""
    host, port = settings.host, settings.port
    shown = f"[{host}]" if ":" in host else host
    what = ", ".join(refs) or "no model yet"
    say(f"serving {what} at http://{shown}:{port} (docs: http://{shown}:{port}/docs)")
    if not refs:
        say(f"no model is registered in {settings.home}: train one with `modelshop train --data FILE --name NAME` "
            "(it is served as soon as it is registered)")


def serve(app, host: str, port: int) -> None:
    """uvicorn until interrupted."""
    import uvicorn

    # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from any local process as the client's
    # address; MODELSHOP_PROXY_HOPS is the one rule for trusting it (the storefront's per-address limits)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)
