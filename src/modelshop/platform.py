"""The composition root: the one place that builds the platform's server from its parts.

    settings → database → gate (billing's by default; the admin key alone with MODELSHOP_SERVE_GATE=admin)
             → serve.create_app(settings, gate, db, routers) with every part's routers:
               billing (admin API, customer self-service), apps, channels, web (storefront, console)

`serve` knows none of the parts above it; this module knows them all and hands them in.
`run(...)` is what `modelshop serve` calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI

from modelshop.db import Database, get_database
from modelshop.gate import AdminKeyGate, Gate
from modelshop.settings import Settings, get_settings


def make_gate(settings: Settings, db: Database | None = None) -> Gate:
    """The gate `serve_gate` names: billing (customer keys, limits, quotas, the ledger) or admin."""
    if settings.serve_gate == "admin":
        return AdminKeyGate(settings)
    from modelshop.billing import BillingGate

    return BillingGate(settings, db)


def routers() -> list:
    """Every part's HTTP routers, in the order they are mounted."""
    from modelshop import web
    from modelshop.apps import api as apps_api
    from modelshop.billing import api as billing_api
    from modelshop.channels import api as channels_api

    return [*billing_api.routers, *apps_api.routers, *channels_api.routers, *web.routers]


def build_app(settings: Settings | None = None, gate: Gate | None = None) -> FastAPI:
    """The whole server: the settings' gate (or `gate`), its database, and every part's routes."""
    from modelshop.serve.app import create_app

    settings = settings or get_settings()
    db = getattr(gate, "db", None) or get_database(settings)
    return create_app(settings, gate or make_gate(settings, db), db=db, routers=routers())


def run(settings: Settings | None = None, *, host: str | None = None, port: int | None = None,
        say: Callable[[str], None] = print) -> None:
    """`modelshop serve`: check, say what is served and where, then serve until interrupted."""
    from modelshop.serve import server

    settings = settings or get_settings()
    # --host/--port are the settings from here on (the console's Secure-cookie rule reads the host)
    settings = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port})
    refs = server.preflight(settings)
    app = build_app(settings)
    server.announce(settings, refs, say)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # one line per outgoing request otherwise
    server.serve(app, settings.host, settings.port)
