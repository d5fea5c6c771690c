"""The console's labelling page: the feedback loop (G → A) in the browser.

    GET  /console/labels                    pending items (unsure and down-rated messages) and dataset versions
    POST /console/labels/{item_id}          form: label (a choice), or new_label, or skip → the item's label
    POST /console/datasets/{name}/export    the dataset's next version: the last one + the items labelled since

The same `apps.feedback` functions as `modelshop label`, `modelshop apps dataset export` and the
/apps/labels API; the admin key only, with the console's login cookie and CSRF token.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from modelshop.apps import feedback
from modelshop.errors import ValidationError
from modelshop.web.console import action, page
from modelshop.web.deps import database, settings

router = APIRouter(prefix="/console", include_in_schema=False)
SHOWN = 200  # pending items one page shows (oldest first)


@router.get("/labels")
async def labels_page(request: Request):
    db, conf = database(request), settings(request)

    def data():
        items = feedback.pending(limit=SHOWN, db=db)
        versions = feedback.list_datasets(settings=conf)
        waiting = feedback.waiting_for_export(db=db)
        names = sorted({i["dataset"] for i in items} | {v["name"] for v in versions} | set(waiting))
        return {"items": items, "versions": versions[::-1], "datasets": [(n, waiting.get(n, 0)) for n in names]}

    return await page(request, "console_labels.html", data=data)


def _label(fields, user, db, item_id):
    if fields.get("skip"):
        label, allow_new = feedback.SKIP, False
    else:
        new = (fields.get("new_label") or "").strip()
        label, allow_new = (new, True) if new else (fields.get("label") or "", False)
        if not label:
            raise ValidationError("label: choose one of the item's labels or type a new one (or skip)")
    item = feedback.label_item(item_id, label, by=user.actor, allow_new=allow_new, db=db)
    if item["status"] == "skipped":
        return {"message": f"item {item_id} set aside (skipped)"}
    return {"message": f'item {item_id} labelled "{item["label"]}"; it joins the next version of dataset '
                       f'{item["dataset"]}'}


def _export(fields, user, conf, name):
    v = feedback.export_dataset(name, settings=conf)
    return {"message": f"dataset {v['name']} version {v['version']}: {v['rows']} rows ({v['added']} newly labelled)",
            "value": v["path"]}


@router.post("/labels/{item_id}")
async def label_action(request: Request, item_id: int):
    return await action(request, partial(_label, db=database(request), item_id=item_id), "/console/labels")


@router.post("/datasets/{name}/export")
async def export_action(request: Request, name: str):
    return await action(request, partial(_export, conf=settings(request), name=name), "/console/labels")
