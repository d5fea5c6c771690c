"""The console's support desk: hand-offs of the support bots, answered by a person.

    GET  /console/tickets                   open tickets with their conversation, and the last answered ones
    POST /console/tickets/{ticket_id}/reply form: text → the answer joins the conversation (the storefront's
                                            chat widget shows it) and the bot takes over again

The same `apps.support` functions as `modelshop apps tickets` and /apps/support/tickets.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from modelshop.apps import support
from modelshop.web.console import action, page
from modelshop.web.deps import database

router = APIRouter(prefix="/console", include_in_schema=False)
ANSWERED_SHOWN = 50


@router.get("/tickets")
async def tickets_page(request: Request):
    db = database(request)

    def data():
        return {"open": support.list_tickets("open", db=db),
                "answered": support.list_tickets("answered", db=db)[-ANSWERED_SHOWN:][::-1]}

    return await page(request, "console_tickets.html", data=data)


def _reply(fields, user, db, ticket_id):
    t = support.reply_ticket(ticket_id, fields.get("text", ""), by=fields.get("by") or user.actor, db=db)
    return {"message": f"ticket {t['id']} answered; the answer is in the conversation and the bot takes over again"}


@router.post("/tickets/{ticket_id}/reply")
async def reply_action(request: Request, ticket_id: int):
    return await action(request, partial(_reply, db=database(request), ticket_id=ticket_id), "/console/tickets")
