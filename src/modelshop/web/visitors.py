"""Who a storefront visitor is, and what it may do a minute: a cookie id the server signs.

The cookie `ms_visitor` holds `id.signature` (`signing`, purpose "visitor"), so a visitor cannot
mint ids. A request without a valid one is a new visitor: its page gets a fresh signed id, while
its calls draw on its address's buckets (`throttle`); forging or dropping the cookie buys no budget.
New visitors' page views also draw on their address's budget, so a script that never keeps the
cookie cannot add a visit row per load.

The signup form carries a token bound to the visitor id (purpose "signup"): a form posted from
another site, or without the cookie, does not have it.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from modelshop.channels import attribution
from modelshop.web import throttle
from modelshop.web.deps import set_cookie, settings
from modelshop.web.signing import signer

VISITOR_COOKIE = "ms_visitor"
VISITOR = "visitor"
SIGNUP = "signup"


def known_visitor(request: Request) -> str | None:
    """The id of the visitor's cookie when the server signed it, else None."""
    vid = signer(settings(request)).unsign(VISITOR, request.cookies.get(VISITOR_COOKIE))
    return attribution.valid_visitor(vid)


async def page_visitor(request: Request) -> tuple[str, bool]:
    """The visitor id of a page view and whether to record the view: a new visitor's views are
    recorded within its address's budget (the page is served either way)."""
    vid = known_visitor(request)
    if vid is not None:
        return vid, True
    conf = settings(request)
    wait = await throttle.buckets_of(request, conf).take(
        f"new-visitor:addr:{throttle.address_key(request, conf)}", conf.storefront_address_rpm)
    return attribution.new_visitor_id(), wait == 0


def keep_visitor(request: Request, response: Response, vid: str) -> Response:
    """Set the signed visitor cookie for the attribution window."""
    conf = settings(request)
    set_cookie(request, response, VISITOR_COOKIE, signer(conf).sign(VISITOR, vid),
               max_age=conf.attribution_window_days * 86400)
    return response


def signup_token(request: Request, vid: str) -> str:
    return signer(settings(request)).signature(SIGNUP, vid)


def signup_token_ok(request: Request, token: str | None) -> str | None:
    """The visitor id when the form's token is the one its page was given, else None."""
    vid = known_visitor(request)
    return vid if vid and signer(settings(request)).check(SIGNUP, vid, token) else None


async def admit(request: Request, action: str, rpm: int, unit: str, hint: str = "",
                everyone_rpm: int | None = None) -> None:
    """One call of `action`: from the visitor's bucket (`rpm`), its address's (storefront_address_rpm)
    and, when given, everyone's (`everyone_rpm`); RateLimited naming the one that is short."""
    conf = settings(request)
    addr = throttle.address_key(request, conf)
    vid = known_visitor(request)
    key = action.replace(" ", "-")
    limits = [(f"{key}:{'v:' + vid if vid else 'a:' + addr}", rpm,
               f"the {action} allows {{n}} {unit} a minute; retry in {{s}} s{hint}"),
              (f"{key}:addr:{addr}", conf.storefront_address_rpm,
               f"the {action} allows {{n}} {unit} a minute from one address; retry in {{s}} s{hint}")]
    if everyone_rpm is not None:
        limits.append((f"{key}:all", everyone_rpm,
                       f"the {action} is busy ({{n}} {unit} a minute for all visitors together); "
                       f"retry in {{s}} s{hint}"))
    await throttle.admit(request, conf, limits)
