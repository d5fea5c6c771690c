"""`modelshop apps faq | bot | tickets | dataset | recommend`: the applications, one library call each.

The commands that run a model hand the app function this process's `DirectModels` (each model loaded
once, here); a server hands its own (`PooledModels`) instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modelshop.cli.output import alias, emit_json

JSON = typer.Option(False, "--json", help="print the result as JSON")

apps_app = typer.Typer(no_args_is_help=True, help="FAQ answering, the support bot, feedback datasets, recommendation.")
faq_app = typer.Typer(no_args_is_help=True, help="Knowledge bases of question–answer pairs.")
bot_app = typer.Typer(no_args_is_help=True, help="Customer-service bots.")
tickets_app = typer.Typer(no_args_is_help=True, help="Hand-offs waiting for a person.")
dataset_app = typer.Typer(no_args_is_help=True, help="Dataset versions made from labelled messages.")
recommend_app = typer.Typer(no_args_is_help=True, help="Recommenders: fit and ask.")


@faq_app.command("build")
def faq_build(name: str = typer.Option(..., "--name", help="knowledge base name"),
              data: Path = typer.Option(..., "--data", help="CSV/TSV/JSONL/Parquet of question–answer pairs"),
              question_col: str = typer.Option(None, "--question-col", help="question column (auto-detected)"),
              answer_col: str = typer.Option(None, "--answer-col", help="answer column (auto-detected)"),
              id_col: str = typer.Option(None, "--id-col", help="id column (default: row numbers)"),
              threshold: float = typer.Option(None, help="confidence threshold [default: calibrated from the data]"),
              json_out: bool = JSON) -> None:
    """Embed the pairs and register a new version of the knowledge base (in production)."""
    from modelshop.apps.faq import build_kb

    kb = build_kb(data, name, question_col=question_col, answer_col=answer_col, id_col=id_col, threshold=threshold)
    if json_out:
        emit_json(kb)
        return
    typer.echo(f"built {kb['name']}:{kb['version']}: {kb['entries']} entries ({kb['views']} vectors, "
               f"{kb['search']} search), confidence threshold {kb['threshold']} ({kb['calibration']['method']})")


@faq_app.command("ask")
def faq_ask(question: str = typer.Argument(..., help="the question"),
            name: str = typer.Option(..., "--name", help="knowledge base NAME or NAME:VERSION"),
            top_k: int = typer.Option(3, "--top-k", help="answers to show"), json_out: bool = JSON) -> None:
    """Ask a knowledge base."""
    from modelshop.apps.faq import ask
    from modelshop.serve.direct_models import DirectModels

    out = ask(name, question, top_k, models=DirectModels())
    if json_out:
        emit_json(out)
        return
    if not out["confident"]:
        typer.echo(f"no confident answer (threshold {out['threshold']}); nearest questions:")
        for s in out["suggestions"]:
            typer.echo(f"  {s['score']:.3f}  [{s['id']}] {s['question']}")
        return
    for a in out["answers"]:
        typer.echo(f"{a['score']:.3f}  [{a['id']}] {a['question']}\n       {a['answer']}")


@faq_app.command("list")
def faq_list(json_out: bool = JSON) -> None:
    """Every version of every knowledge base."""
    from modelshop.apps.faq import list_kbs

    rows = list_kbs()
    if json_out:
        emit_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['name']}:{r['version']}  {r['stage']:<10} {r['entries']} entries  threshold {r['threshold']}")


@faq_app.command("promote")
def faq_promote(ref: str = typer.Argument(..., help="NAME:VERSION"),
                stage: str = typer.Option("production", help="production | staging | archived"),
                json_out: bool = JSON) -> None:
    """Serve another version of a knowledge base (or archive one)."""
    from modelshop.apps.artifacts import ArtifactStore

    row = ArtifactStore.from_settings().promote("faq", ref, stage)
    if json_out:
        emit_json({"name": row.name, "version": row.version, "stage": row.stage})
    else:
        typer.echo(f"{row.ref} is now {row.stage}")


@bot_app.command("create")
def bot_create(name: str = typer.Option(..., "--name", help="bot name"),
               intent_model: str = typer.Option(..., "--intent-model", help="registered classifier NAME[:VERSION]"),
               kb: str = typer.Option(None, "--kb", help="knowledge base name"),
               dataset: str = typer.Option(None, help="dataset its labelled messages go to [default: the bot name]"),
               min_confidence: float = typer.Option(None, help="intent confidence below which it is unsure"),
               handoff_intents: str = typer.Option(None, help="comma-separated intents that hand off to a person"),
               replies: Path = typer.Option(None, help="JSON or YAML file: intent → reply"),
               storefront: bool = typer.Option(False, help="make it the public bot of the storefront's chat widget"),
               llm: str = typer.Option(None, "--llm", help="generative model (`modelshop llm list`) that composes "
                                       "replies from the top FAQ answers, citing them [default: FAQ answers verbatim]"),
               llm_max_tokens: int = typer.Option(None, "--llm-max-tokens",
                                                  help="longest generated reply, in tokens [default: from the model]"),
               replace: bool = typer.Option(False, help="reconfigure an existing bot"), json_out: bool = JSON) -> None:
    """Create a bot from an intent model and a knowledge base."""
    from modelshop.apps.support import create_bot

    bot = create_bot(name, intent_model, kb, dataset=dataset, min_confidence=min_confidence,
                     handoff_intents=[i.strip() for i in handoff_intents.split(",") if i.strip()]
                     if handoff_intents is not None else None,
                     replies=_read_mapping(replies) if replies else None, storefront=storefront, llm=llm,
                     llm_max_tokens=llm_max_tokens, replace=replace)
    if json_out:
        emit_json(bot)
    else:
        typer.echo(f"bot {bot['name']}: intents from {bot['intent_model']}, answers from {bot['kb'] or '(no FAQ)'}"
                   f"{_composed_by(bot)}, hands off on {', '.join(bot['handoff_intents']) or 'request only'}")


def _composed_by(bot: dict) -> str:
    return f" composed by {bot['llm']} (up to {bot['llm_max_tokens']} tokens)" if bot.get("llm") else ""


@bot_app.command("update")
def bot_update(name: str = typer.Argument(..., help="bot name"),
               llm: str = typer.Option(..., "--llm", help='generative model that composes its replies, or "none" '
                                       "for the FAQ's answers verbatim"),
               llm_max_tokens: int = typer.Option(None, "--llm-max-tokens",
                                                  help="longest generated reply, in tokens [default: from the model]"),
               json_out: bool = JSON) -> None:
    """Set (or with --llm none, unset) the generative model of an existing bot; its other settings stay."""
    from modelshop.apps.support import set_llm

    bot = set_llm(name, None if llm.strip().lower() == "none" else llm.strip(), max_tokens=llm_max_tokens)
    if json_out:
        emit_json(bot)
    else:
        typer.echo(f"bot {bot['name']}: " + (f"replies{_composed_by(bot)}" if bot["llm"]
                                              else f"answers from {bot['kb'] or '(no FAQ)'} verbatim"))


def _read_mapping(path: Path) -> dict:
    import yaml

    from modelshop.errors import ValidationError

    if not path.is_file():
        raise ValidationError(f"{path} not found; give a JSON or YAML file mapping intent → reply")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML reads JSON too
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValidationError(f"{path.name} must map each intent to a reply text, "
                              "e.g. refund: We refund within 14 days")
    return {str(k): v for k, v in data.items()}


@bot_app.command("list")
def bot_list(json_out: bool = JSON) -> None:
    """Every bot and its configuration."""
    from modelshop.apps.support import list_bots

    rows = list_bots()
    emit_json(rows) if json_out else [typer.echo(f"{b['name']}  model {b['intent_model']}  kb {b['kb']}"
                                                 + (f"  llm {b['llm']}" if b.get("llm") else "")) for b in rows]


@bot_app.command("say")
def bot_say(text: str = typer.Argument(..., help="the message"), name: str = typer.Option(..., "--name"),
            session: str = typer.Option(None, "--session", help="continue this session"),
            json_out: bool = JSON) -> None:
    """Send one message to a bot, as the chat widget does."""
    from modelshop.apps.support import handle_message
    from modelshop.serve.direct_models import DirectModels

    out = handle_message(name, text, session, models=DirectModels())
    if json_out:
        emit_json(out)
        return
    typer.echo(out["reply"])
    ticket = f", ticket #{out['ticket_id']}" if out.get("ticket_id") else ""
    typer.echo(f"(from {out['source']}, intent {out['intent']} {out['confidence']:.2f}{ticket}; "
               f"continue with --session {out['session_id']})")


@tickets_app.command("list")
def tickets_list(status: str = typer.Option("open", help="open | answered"),
                 bot: str = typer.Option(None, help="only this bot's"), json_out: bool = JSON) -> None:
    """Hand-offs and their conversations."""
    from modelshop.apps.support import list_tickets

    rows = list_tickets(status, bot)
    if json_out:
        emit_json(rows)
        return
    for t in rows:
        typer.echo(f"#{t['id']}  {t['bot']}  {t['reason']:<18} {t['question']}")


@tickets_app.command("reply")
def tickets_reply(ticket_id: int = typer.Argument(...), text: str = typer.Argument(..., help="your answer"),
                  by: str = typer.Option("operator", help="who answers"), json_out: bool = JSON) -> None:
    """Answer a ticket; the answer appears in the user's conversation."""
    from modelshop.apps.support import reply_ticket

    t = reply_ticket(ticket_id, text, by=by)
    emit_json(t) if json_out else typer.echo(f"ticket #{t['id']} answered by {t['answered_by']}")


@dataset_app.command("export")
def dataset_export(name: str = typer.Option(..., "--name", help="dataset name (a bot's dataset)"),
                   base: Path = typer.Option(None, help="file the first version starts from (e.g. the training data)"),
                   json_out: bool = JSON) -> None:
    """Write the next dataset version (previous rows + newly labelled ones); prints its path."""
    from modelshop.apps.feedback import export_dataset

    v = export_dataset(name, base=base)
    emit_json(v) if json_out else typer.echo(v["path"])


@dataset_app.command("list")
def dataset_list(name: str = typer.Option(None, "--name"), json_out: bool = JSON) -> None:
    """Dataset versions with their sha256 (a model card's data_sha256 points at one)."""
    from modelshop.apps.feedback import list_datasets

    rows = list_datasets(name)
    if json_out:
        emit_json(rows)
        return
    for v in rows:
        typer.echo(f"{v['name']}:{v['version']}  {v['rows']} rows (+{v['added']})  {v['sha256'][:12]}  {v['path']}")


@recommend_app.command("fit")
def recommend_fit(items: Path = typer.Option(..., "--items", help="items file (id, title, description, tags ...)"),
                  interactions: Path = typer.Option(..., "--interactions", help="user–item interactions file"),
                  name: str = typer.Option(..., "--name", help="recommender name"),
                  item_col: str = typer.Option(None, help="item id column in both files (auto-detected)"),
                  user_col: str = typer.Option(None, help="user id column (auto-detected)"),
                  time_col: str = typer.Option(None, help="time column (auto-detected; else file order)"),
                  text_cols: str = typer.Option(None, help="comma-separated item text columns (auto-detected)"),
                  json_out: bool = JSON) -> None:
    """Fit a hybrid recommender and register a new version of it."""
    from modelshop.apps.recommend import fit_recommender

    out = fit_recommender(items, interactions, name, item_col=item_col, user_col=user_col, time_col=time_col,
                          text_cols=[c.strip() for c in text_cols.split(",")] if text_cols else None)
    if json_out:
        emit_json(out)
        return
    typer.echo(f"fitted {out['name']}:{out['version']}: {out['users']} users, {out['items']} items, "
               f"{out['interactions']} interactions; chosen {json.dumps(out['params'])}; "
               f"validation {json.dumps(out.get('validation'))}")


@recommend_app.command("for")
def recommend_for(user: str = typer.Argument(..., help="user id (a new one gets popular items)"),
                  model: str = typer.Option(None, "--model", help="recommender NAME[:VERSION]; default: the only one"),
                  top_k: int = typer.Option(None, "--top-k", help="how many [default: 10]"),
                  like: str = typer.Option(None, help="comma-separated item ids the user liked"),
                  query: str = typer.Option(None, help="what the user looks for, in words"),
                  old_name: str = typer.Option(None, "--name", hidden=True),  # the spellings before --model/--top-k
                  old_k: int = typer.Option(None, "-k", hidden=True),
                  json_out: bool = JSON) -> None:
    """Recommend items for a user."""
    from modelshop.apps.recommend import recommend
    from modelshop.serve.direct_models import DirectModels

    model = alias(model, old_name, "--model", "--name")
    k = alias(top_k, old_k, "--top-k", "-k")
    out = recommend(user, 10 if k is None else k, model=model, like=like.split(",") if like else None, query=query,
                    models=DirectModels())
    if json_out:
        emit_json(out)
        return
    typer.echo(f"{out['model']} for {user} ({out['strategy']}):")
    for n, item in enumerate(out["items"], start=1):
        typer.echo(f"{n:>3}. [{item['item_id']}] {item['title']}  ({item['score']:.3f})")


apps_app.add_typer(faq_app, name="faq")
apps_app.add_typer(bot_app, name="bot")
apps_app.add_typer(tickets_app, name="tickets")
apps_app.add_typer(dataset_app, name="dataset")
apps_app.add_typer(recommend_app, name="recommend")


def register(app: typer.Typer) -> None:
    app.add_typer(apps_app, name="apps", help="FAQ answering, the support bot, feedback datasets, recommendation.")
