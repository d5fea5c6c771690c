"""`modelshop serve`: refuse to start when nothing can be served, print the URL, run uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Callable

from modelshop.errors import ValidationError
from modelshop.registry import Registry
from modelshop.settings import Settings, get_settings


def preflight(settings: Settings) -> list[str]:
    """The production versions that will be served, or a one-line error saying what to do first."""
    rows = Registry.from_settings(settings).production()
    if not rows:
        raise ValidationError(f"no model is registered in {settings.home}; train one first "
                              "(`modelshop train --data FILE --name NAME`) or run `modelshop demo`")
    if settings.serve_gate == "admin" and settings.admin_key is None:
        raise ValidationError("MODELSHOP_ADMIN_KEY is not set, so no request could get in; set it to the bearer "
                              "key clients will send (or use MODELSHOP_SERVE_GATE=billing)")
    return [r.ref for r in rows]


def run_server(settings: Settings | None = None, *, host: str | None = None, port: int | None = None,
               say: Callable[[str], None] = print) -> None:
    """Serve every production model until interrupted."""
    import uvicorn

    from modelshop.serve.app import create_app

    settings = settings or get_settings()
    host = host or settings.host
    port = port or settings.port
    refs = preflight(settings)
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    say(f"serving {', '.join(refs)} at http://{shown}:{port} (docs: http://{shown}:{port}/docs)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
