"""`modelshop plans | resellers | customers | keys | usage | invoices | revenue | wallet | audit`.

Each command is one call into `modelshop.billing`; `--json` prints what the library returned.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import typer

from modelshop.cli.output import emit_json

ACTOR = "cli"
JSON = typer.Option(False, "--json", help="print the result as JSON")

plans_app = typer.Typer(no_args_is_help=True)
resellers_app = typer.Typer(no_args_is_help=True)
customers_app = typer.Typer(no_args_is_help=True)
keys_app = typer.Typer(no_args_is_help=True)
invoices_app = typer.Typer(no_args_is_help=True)
wallet_app = typer.Typer(no_args_is_help=True)


def _db():
    from modelshop.db import get_database

    return get_database()


def _show(obj, json_out: bool, line: str) -> None:
    emit_json(obj) if json_out else typer.echo(line)


def _invoice_lines(inv: dict) -> None:
    number = inv["number"] or f"draft #{inv['id']}"
    typer.echo(f"{number}  customer {inv['customer_id']} {inv['customer'] or ''}  {inv['period']}  {inv['status']}")
    for ln in inv["lines"]:
        typer.echo(f"    {ln['description']:<70} {ln['amount']:>12} {inv['currency']}")
    if Decimal(inv["credits_applied"]):
        typer.echo(f"    {'prepaid credits applied':<70} {'-' + inv['credits_applied']:>12} {inv['currency']}")
    typer.echo(f"    {'total':<70} {inv['total']:>12} {inv['currency']}")


@plans_app.command("create")
def plans_create(file: Path = typer.Option(..., "--file", help="plan file, YAML or JSON"), json_out: bool = JSON):
    """Create a plan, or a new version of it when the file changed."""
    from modelshop.billing.accounts import create_plan
    from modelshop.billing.plans import load_plan_file

    plan = create_plan(_db(), load_plan_file(file), actor=ACTOR)
    state = "created" if plan["created"] else "unchanged, still"
    _show(plan, json_out, f"plan {plan['code']} {state} version {plan['version']} (id {plan['id']})")


@plans_app.command("list")
def plans_list(json_out: bool = JSON):
    """Every plan version."""
    from modelshop.billing.accounts import list_plans

    rows = list_plans(_db())
    _show(rows, json_out, "\n".join(f"{p['code']}:{p['version']}\t{p['currency']}\t{p['interval']}" for p in rows)
          or "no plans yet; create one with `modelshop plans create --file PLAN.yaml`")


@resellers_app.command("create")
def resellers_create(name: str = typer.Option(..., "--name"),
                     discount: str = typer.Option(None, "--discount", help="wholesale discount in percent"),
                     json_out: bool = JSON):
    """A reseller whose customers' invoices carry its wholesale discount."""
    from modelshop.billing.accounts import create_reseller
    from modelshop.settings import get_settings

    r = create_reseller(_db(), name, discount if discount is not None
                        else get_settings().reseller_default_discount_percent, actor=ACTOR)
    _show(r, json_out, f"reseller {r['id']} {r['name']}: {r['discount_percent']}% discount")


@resellers_app.command("list")
def resellers_list(json_out: bool = JSON):
    from modelshop.billing.accounts import list_resellers

    rows = list_resellers(_db())
    _show(rows, json_out, "\n".join(f"{r['id']}\t{r['name']}\t{r['discount_percent']}%" for r in rows))


@customers_app.command("create")
def customers_create(name: str = typer.Option(..., "--name"), plan: str = typer.Option(..., "--plan"),
                     email: str = typer.Option(None, "--email"),
                     reseller: int = typer.Option(None, "--reseller", help="reseller id"), json_out: bool = JSON):
    """A customer on the latest version of a plan."""
    from modelshop.billing.accounts import create_customer

    c = create_customer(_db(), name, plan, email=email, reseller_id=reseller, actor=ACTOR)
    _show(c, json_out, f"customer {c['id']} {c['name']} on {c['plan']}:{c['plan_version']}")


@customers_app.command("list")
def customers_list(json_out: bool = JSON):
    from modelshop.billing.accounts import list_customers

    rows = list_customers(_db())
    _show(rows, json_out, "\n".join(f"{c['id']}\t{c['name']}\t{c['plan']}:{c['plan_version']}\t{c['status']}"
                                    for c in rows))


@customers_app.command("set-plan")
def customers_set_plan(customer_id: int, plan: str = typer.Option(..., "--plan"), json_out: bool = JSON):
    """Move a customer to the latest version of a plan."""
    from modelshop.billing.accounts import change_plan

    c = change_plan(_db(), customer_id, plan, actor=ACTOR)
    _show(c, json_out, f"customer {c['id']} now on {c['plan']}:{c['plan_version']}")


@keys_app.command("create")
def keys_create(customer: int = typer.Option(..., "--customer", help="customer id"),
                models: str = typer.Option(None, "--models", help="comma-separated models it may call; default all"),
                rpm: int = typer.Option(None, "--rpm", help="requests per minute"),
                tpm: int = typer.Option(None, "--tpm", help="tokens per minute"),
                expires: str = typer.Option(None, "--expires", help="ISO-8601 expiry, e.g. 2027-01-31T00:00:00Z"),
                name: str = typer.Option("", "--name"), json_out: bool = JSON):
    """A customer API key, printed this once (only its hash is kept)."""
    from modelshop.billing.keys import create_key

    k = create_key(_db(), customer, models=models.split(",") if models else None, rpm=rpm, tpm=tpm,
                   expires=expires, name=name, actor=ACTOR)
    _show(k, json_out, f"{k['key']}\n(key {k['id']} for customer {customer}; shown once, store it now)")


@keys_app.command("create-admin")
def keys_create_admin(name: str = typer.Option(..., "--name", help="who holds it"), json_out: bool = JSON):
    """A database admin key, printed this once."""
    from modelshop.billing.keys import create_admin_key

    k = create_admin_key(_db(), name=name, actor=ACTOR)
    _show(k, json_out, f"{k['key']}\n(admin key {k['id']}; shown once, store it now)")


@keys_app.command("revoke")
def keys_revoke(key_id: int, json_out: bool = JSON):
    """Revoke a key; calls with it get 401 at once."""
    from modelshop.billing.keys import revoke_key

    k = revoke_key(_db(), key_id, actor=ACTOR)
    _show(k, json_out, f"key {k['id']} ({k['prefix']}…) revoked")


@keys_app.command("rotate")
def keys_rotate(key_id: int, json_out: bool = JSON):
    """Revoke a key and print its replacement (same scopes and limits)."""
    from modelshop.billing.keys import rotate_key

    k = rotate_key(_db(), key_id, actor=ACTOR)
    _show(k, json_out, f"{k['key']}\n(key {k['id']} replaces key {key_id}; shown once)")


@keys_app.command("list")
def keys_list(customer: int = typer.Option(None, "--customer"), json_out: bool = JSON):
    from modelshop.billing.keys import list_keys

    rows = list_keys(_db(), customer)
    _show(rows, json_out, "\n".join(f"{k['id']}\t{k['prefix']}…\t{k['kind']}\tcustomer {k['customer_id']}\t"
                                    f"{k['status']}\tlast used {k['last_used_at']}" for k in rows))


def usage_cmd(customer: int = typer.Option(None, "--customer", help="customer id; default all"),
              period: str = typer.Option(None, "--period", help="YYYY-MM; default this month"),
              json_out: bool = JSON):
    """Units (requests, tokens, characters, input and output tokens) and compute time per customer and model,
    and the part of them that was estimated (counted locally: the upstream sent no usage)."""
    from modelshop.billing.usage import usage_summary

    u = usage_summary(_db(), customer_id=customer, period=period)
    _show(u, json_out, "\n".join([f"{u['period']}: {u['totals']}", f"  estimated: {u['estimated']}"] + [
        f"  customer {r['customer_id']}\t{r['model']}\t{r['requests']} requests\t{r['tokens']} tokens\t"
        f"{r['characters']} characters\t{r['input_tokens']} in / {r['output_tokens']} out tokens"
        f"{_estimated(r['estimated'])}\t{r['compute_seconds']} s" for r in u["by_model"]]))


def _estimated(est: dict) -> str:
    if not est["requests"]:
        return ""
    return f" ({est['input_tokens']} in / {est['output_tokens']} out estimated, {est['requests']} calls)"


@invoices_app.command("run")
def invoices_run(period: str = typer.Option(..., "--period", help="YYYY-MM (or YYYY for yearly plans)"),
                 customer: int = typer.Option(None, "--customer"), json_out: bool = JSON):
    """Compute the period's drafts; finalised invoices are left as they are."""
    from modelshop.billing.invoices import run_invoices

    result = run_invoices(_db(), period, customer_id=customer, actor=ACTOR)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"{period}: {result['created']} created, {result['updated']} updated, "
               f"{result['unchanged']} finalised left unchanged")
    for inv in result["invoices"]:
        _invoice_lines(inv)


@invoices_app.command("list")
def invoices_list(customer: int = typer.Option(None, "--customer"), period: str = typer.Option(None, "--period"),
                  status: str = typer.Option(None, "--status"), json_out: bool = JSON):
    from modelshop.billing.invoices import list_invoices

    rows = list_invoices(_db(), customer_id=customer, period=period, status=status)
    _show(rows, json_out, "\n".join(f"{i['id']}\t{i['number'] or '-'}\t{i['customer_id']}\t{i['period']}\t"
                                    f"{i['status']}\t{i['total']} {i['currency']}" for i in rows))


@invoices_app.command("show")
def invoices_show(invoice_id: int, json_out: bool = JSON):
    from modelshop.billing.invoices import get_invoice

    inv = get_invoice(_db(), invoice_id)
    emit_json(inv) if json_out else _invoice_lines(inv)


@invoices_app.command("finalize")
def invoices_finalize(invoice_id: int, json_out: bool = JSON):
    """Freeze a draft of a closed period: number it, draw prepaid credits."""
    from modelshop.billing.invoices import finalize

    inv = finalize(_db(), invoice_id, actor=ACTOR)
    emit_json(inv) if json_out else _invoice_lines(inv)


@invoices_app.command("void")
def invoices_void(invoice_id: int, reason: str = typer.Option(..., "--reason"), json_out: bool = JSON):
    """Void a finalised invoice and issue a credit note."""
    from modelshop.billing.invoices import void

    inv = void(_db(), invoice_id, reason=reason, actor=ACTOR)
    _show(inv, json_out, f"invoice {inv['number']} void; credit note {inv['credit_note']['number']} "
                         f"for {inv['credit_note']['amount']} {inv['currency']}")


@invoices_app.command("pay")
def invoices_pay(invoice_id: int, reference: str = typer.Option("", "--reference"), json_out: bool = JSON):
    """Mark a finalised invoice paid."""
    from modelshop.billing.invoices import pay

    inv = pay(_db(), invoice_id, actor=ACTOR, reference=reference)
    _show(inv, json_out, f"invoice {inv['number']} paid ({inv['total']} {inv['currency']})")


def revenue_cmd(period: str = typer.Option(..., "--period", help="YYYY-MM"), json_out: bool = JSON):
    """Revenue, upstream cost (the registered upstream models' prices), serving cost and gross margin by model
    and customer; a warning for each model sold below its cost."""
    from modelshop.billing.revenue import revenue
    from modelshop.llm.upstream import upstream_costs
    from modelshop.registry import Registry
    from modelshop.settings import get_settings

    settings = get_settings()
    r = revenue(_db(), period, settings, upstream_rates=upstream_costs(Registry.from_settings(settings)))
    if json_out:
        emit_json(r)
        return
    for w in r["warnings"]:
        typer.echo(f"warning: {w['message']}", err=True)
    for title, key in (("by model", "model"), ("by customer", "customer_id"), ("total", None)):
        typer.echo(f"{period} {title}:")
        for row in r["by_model" if key == "model" else "by_customer" if key else "totals"]:
            typer.echo(f"  {row.get(key, 'all') if key else 'all'}\trevenue {row['revenue']} {row['currency']}\t"
                       f"upstream {row['upstream_cost']}\tserving {row['serving_cost']}\t"
                       f"margin {row['margin']} ({row['margin_percent']}%)"
                       + (f"\t{row['estimated_tokens']} tokens estimated" if row["estimated_tokens"] else ""))


@wallet_app.command("topup")
def wallet_topup(customer: int = typer.Option(..., "--customer"),
                 amount: str = typer.Option(..., "--amount", help='e.g. "100.00", in the plan currency'),
                 note: str = typer.Option("", "--note"), json_out: bool = JSON):
    """Add prepaid credit to a customer's wallet."""
    from modelshop.billing.wallet import topup

    w = topup(_db(), customer, amount, actor=ACTOR, note=note)
    _show(w, json_out, f"customer {customer}: +{w['topped_up']} {w['currency']}, balance {w['balance']}")


@wallet_app.command("show")
def wallet_show(customer: int = typer.Option(..., "--customer"), json_out: bool = JSON):
    from modelshop.billing.wallet import wallet

    w = wallet(_db(), customer)
    _show(w, json_out, f"customer {customer}: balance {w['balance']} {w['currency']}")


def audit_cmd(entity: str = typer.Option(None, "--entity"), limit: int = typer.Option(50, "--limit"),
              json_out: bool = JSON):
    """Who did what to which billing object, newest first."""
    from modelshop.billing.audit import entries

    rows = entries(_db(), entity=entity, limit=limit)
    _show(rows, json_out, "\n".join(f"{e['at']}\t{e['actor']}\t{e['action']}\t{e['entity']} {e['entity_id']}\t"
                                    f"{e['detail']}" for e in rows))


def register(app: typer.Typer) -> None:
    app.add_typer(plans_app, name="plans", help="Plans and prices, versioned, from YAML or JSON files.")
    app.add_typer(resellers_app, name="resellers", help="Resellers and their wholesale discounts.")
    app.add_typer(customers_app, name="customers", help="Customers and the plan version each is on.")
    app.add_typer(keys_app, name="keys", help="API keys: create (shown once), list, rotate, revoke.")
    app.add_typer(invoices_app, name="invoices", help="Invoices: run a period, finalize, void, pay.")
    app.add_typer(wallet_app, name="wallet", help="Prepaid credits: top up, show the balance.")
    app.command("usage")(usage_cmd)
    app.command("revenue")(revenue_cmd)
    app.command("audit")(audit_cmd)
