"""`modelshop label`: the labelling queue from the terminal.

    modelshop label                      list pending items (or, on a terminal, prompt through them)
    modelshop label ITEM_ID LABEL        give one item its label ("skip" sets it aside)
"""

from __future__ import annotations

import sys

import typer

from modelshop.cli.output import emit_json


def label(item_id: int = typer.Argument(None, help="item to label"),
          label_: str = typer.Argument(None, metavar="LABEL", help='its label, or "skip"'),
          dataset: str = typer.Option(None, "--dataset", help="only this dataset's items"),
          new: bool = typer.Option(False, "--new", help="allow a label outside the item's choices"),
          list_only: bool = typer.Option(False, "--list", help="list pending items even on a terminal"),
          by: str = typer.Option("cli", "--by", help="who labels"),
          json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Label messages the bot was unsure of or that users rated down; they feed the next dataset version."""
    from modelshop.apps import feedback
    from modelshop.errors import ValidationError

    if item_id is not None:
        if label_ is None:
            raise ValidationError(f"give the label too: modelshop label {item_id} LABEL (or skip)")
        item = feedback.label_item(item_id, label_, by=by, allow_new=new)
        if json_out:
            emit_json(item)
        else:
            typer.echo(f"item {item['id']}: {item['status']} {item['label'] or ''}".rstrip())
        return
    items = feedback.pending(dataset)
    if list_only or json_out or not sys.stdin.isatty():
        if json_out:
            emit_json(items)
        elif not items:
            typer.echo("no pending items")
        for i in items if not json_out else []:
            guess = f"{i['suggested']} {i['confidence']:.2f}" if i["suggested"] and i["confidence"] is not None else "-"
            typer.echo(f"{i['id']:>6}  {i['dataset']:<16} {i['reason']:<15} {guess:<22} {i['text']}")
        return
    _interactive(items, by, new)


def _interactive(items: list[dict], by: str, allow_new: bool) -> None:
    from modelshop.apps import feedback
    from modelshop.errors import ModelshopError

    if not items:
        typer.echo("no pending items")
        return
    done = 0
    for n, item in enumerate(items, start=1):
        typer.echo(f"\n[{n}/{len(items)}] item {item['id']} ({item['dataset']}, {item['reason']})\n  {item['text']}")
        for k, choice in enumerate(item["choices"], start=1):
            mark = "  ← suggested" if choice == item["suggested"] else ""
            typer.echo(f"    {k}. {choice}{mark}")
        while True:
            answer = typer.prompt("label (number or name; Enter = suggested, s = skip, q = quit)",
                                  default=item["suggested"] or "", show_default=False).strip()
            if answer == "q":
                typer.echo(f"labelled {done}")
                return
            if answer == "s":
                answer = feedback.SKIP
            elif answer.isdigit() and 1 <= int(answer) <= len(item["choices"]):
                answer = item["choices"][int(answer) - 1]
            try:
                feedback.label_item(item["id"], answer, by=by, allow_new=allow_new)
                done += answer != feedback.SKIP
                break
            except ModelshopError as e:
                typer.echo(f"  {e.message}")
    typer.echo(f"labelled {done}")


def register(app: typer.Typer) -> None:
    app.command("label")(label)
