"""What every page needs: the server's database, settings and service; forms, cookies and templates.

Forms are `application/x-www-form-urlencoded` and parsed here (no multipart dependency). Cookies
are first-party, HttpOnly and SameSite; `Secure` whenever the request came over HTTPS, and the
console's session cookie also outside local development (`secure_console_cookie`).
"""

from __future__ import annotations

import hmac
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from modelshop.db import Database
from modelshop.errors import ValidationError
from modelshop.serve.deps import app_state
from modelshop.settings import Settings
from modelshop.web.i18n import LANGS, language, translator

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
MAX_FORM_BYTES = 1_000_000


def settings(request: Request) -> Settings:
    return app_state(request).settings


def database(request: Request) -> Database:
    """The server's database (the one the gate meters into and billing's routes use)."""
    return app_state(request).database()


async def form(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form body (the last value of a repeated field wins)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationError(f"form too large: at most {MAX_FORM_BYTES} bytes")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None,
               path: str = "/", samesite: str = "lax", secure: bool = False) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite=samesite,
                        secure=secure or request.url.scheme == "https")


def _loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secure_console_cookie(request: Request) -> bool:
    """Whether the console's session cookie is Secure: MODELSHOP_CONSOLE_COOKIE_SECURE when set, else yes
    unless this is local development (MODELSHOP_ENV=development and a loopback MODELSHOP_HOST)."""
    conf = settings(request)
    if conf.console_cookie_secure is not None:
        return conf.console_cookie_secure
    return not (conf.env == "development" and _loopback(conf.host))


def same_token(expected: str, given: object) -> bool:
    """A form's token against the one it must carry, in constant time."""
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    lang = language(request)
    html = TEMPLATES.get_template(template).render(request=request, lang=lang, langs=LANGS, t=translator(lang),
                                                   path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") in LANGS:
        set_cookie(request, response, "ms_lang", request.query_params["lang"], max_age=365 * 86400)
    return response
