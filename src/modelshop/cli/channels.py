"""`modelshop channels | partners | commissions`: each command one call into `modelshop.channels`.

`--json` prints what the library returned; otherwise a short line or table for people.
"""

from __future__ import annotations

from pathlib import Path

import typer

from modelshop.cli.output import emit_json

ACTOR = "cli"
JSON = typer.Option(False, "--json", help="print the result as JSON")

channels_app = typer.Typer(no_args_is_help=True)
partners_app = typer.Typer(no_args_is_help=True)
commissions_app = typer.Typer(no_args_is_help=True)


def _db():
    from modelshop.db import get_database

    return get_database()


def _settings():
    from modelshop.settings import get_settings

    return get_settings()


def _show(obj, json_out: bool, line: str) -> None:
    emit_json(obj) if json_out else typer.echo(line)


def _this_month() -> str:
    from modelshop.billing.periods import period_of
    from modelshop.db import utcnow

    return period_of(utcnow(), "month")


# --- channels ---------------------------------------------------------------------------------------

@channels_app.command("create")
def channels_create(name: str = typer.Option(..., "--name"),
                    kind: str = typer.Option(..., "--kind",
                                             help="direct, reseller, marketplace, affiliate or campaign"),
                    code: str = typer.Option(None, "--code", help="referral code (default: made from the name)"),
                    partner: int = typer.Option(None, "--partner", help="id of the partner that owns it"),
                    json_out: bool = JSON):
    """A channel and its referral code (?ref=CODE)."""
    from modelshop.channels.channels import create_channel

    ch = create_channel(_db(), name, kind, code=code, partner_id=partner, actor=ACTOR)
    _show(ch, json_out,
          f"channel {ch['id']} {ch['name']} ({ch['kind']}): referral code {ch['code']}  (?ref={ch['code']})")


@channels_app.command("list")
def channels_list(json_out: bool = JSON):
    """Every channel."""
    from modelshop.channels.channels import list_channels

    rows = list_channels(_db())
    _show(rows, json_out, "\n".join(f"{c['id']}\t{c['code']}\t{c['kind']}\t{c['name']}" for c in rows)
          or "no channels yet; create one with `modelshop channels create --name N --kind K`")


@channels_app.command("link")
def channels_link(channel: str = typer.Option(..., "--channel", help="code or id"),
                  utm_source: str = typer.Option(None, "--utm-source"),
                  utm_medium: str = typer.Option(None, "--utm-medium"),
                  utm_campaign: str = typer.Option(None, "--utm-campaign"),
                  utm_term: str = typer.Option(None, "--utm-term"),
                  utm_content: str = typer.Option(None, "--utm-content"),
                  landing: str = typer.Option("/store", "--landing", help="storefront path the link opens"),
                  no_ref: bool = typer.Option(False, "--no-ref", help="leave ?ref= out; match on utm_* only"),
                  json_out: bool = JSON):
    """A tracking link of a channel: its ref and/or utm_* values."""
    from modelshop.channels.channels import create_link

    link = create_link(_db(), channel, landing=landing, with_ref=not no_ref, actor=ACTOR, utm_source=utm_source,
                       utm_medium=utm_medium, utm_campaign=utm_campaign, utm_term=utm_term, utm_content=utm_content)
    _show(link, json_out, link["url"])


@channels_app.command("cost")
def channels_cost(channel: str = typer.Option(..., "--channel"), month: str = typer.Option(..., "--month"),
                  amount: str = typer.Option(..., "--amount"),
                  kind: str = typer.Option("ad_spend", "--kind", help="ad_spend, partner_fee or other"),
                  currency: str = typer.Option(None, "--currency"), note: str = typer.Option("", "--note"),
                  json_out: bool = JSON):
    """Set what a channel cost in a month."""
    from modelshop.channels.channels import set_cost

    c = set_cost(_db(), channel, month, amount, kind=kind, currency=currency or _settings().channels_currency,
                 note=note, actor=ACTOR)
    _show(c, json_out, f"{c['channel']} {c['month']} {c['kind']}: {c['amount']} {c['currency']}")


@channels_app.command("import-costs")
def channels_import_costs(file: Path = typer.Argument(..., help="CSV: channel,month,kind,amount,currency,note"),
                          json_out: bool = JSON):
    """Set costs from a CSV file (all rows or none)."""
    from modelshop.channels.channels import import_costs_csv
    from modelshop.errors import ValidationError

    if not file.is_file():
        raise ValidationError(f"{file} does not exist")
    out = import_costs_csv(_db(), file.read_text(encoding="utf-8"), currency=_settings().channels_currency,
                           actor=ACTOR)
    _show(out, json_out, f"imported {out['imported']} cost rows")


@channels_app.command("report")
def channels_report(period: str = typer.Option(None, "--period", help="YYYY-MM (default: this month)"),
                    csv_out: bool = typer.Option(False, "--csv", help="print CSV"), json_out: bool = JSON):
    """Funnel, revenue, margin, CAC, LTV, ROI and ROAS per channel for a month."""
    from modelshop.channels.analytics import report, report_csv
    from modelshop.llm.upstream import upstream_costs
    from modelshop.registry import Registry

    settings = _settings()
    rows = report(_db(), settings, period or _this_month(),
                  upstream_rates=upstream_costs(Registry.from_settings(settings)))
    if json_out:
        emit_json(rows)
    elif csv_out:
        typer.echo(report_csv(rows), nl=False)
    else:
        head = (f"{'code':<16}{'visits':>8}{'signups':>8}{'paying':>8}{'revenue':>12}{'cost':>12}"
                f"{'cac':>10}{'ltv':>10}{'roi':>8}")
        typer.echo(head)
        for r in rows:
            typer.echo(f"{r['code']:<16}{r['visits']:>8}{r['signups']:>8}{r['paying']:>8}{r['revenue']:>12}"
                       f"{r['cost']:>12}{r['cac'] or '-':>10}{r['ltv'] or '-':>10}{r['roi'] or '-':>8}")


@channels_app.command("cohorts")
def channels_cohorts(period: str = typer.Option(None, "--period"), channel: str = typer.Option(None, "--channel"),
                     months: int = typer.Option(12, "--months"), json_out: bool = JSON):
    """Retention by signup month (share of each cohort active k months later)."""
    from modelshop.channels.analytics import cohorts
    from modelshop.channels.channels import find_channel

    db = _db()
    channel_id = None
    if channel:
        with db.session() as s:
            channel_id = find_channel(s, channel).id
    out = cohorts(db, period or _this_month(), months=months, channel_id=channel_id)
    _show(out, json_out, "\n".join(f"{r['cohort']}  {r['customers']:>6}  " + " ".join(
        f"{x or '-':>6}" for x in r["retention"]) for r in out["cohorts"]))


@channels_app.command("rebind")
def channels_rebind(customer: int = typer.Option(..., "--customer"), channel: str = typer.Option(..., "--channel"),
                    reason: str = typer.Option(..., "--reason", help="why (recorded in the audit log)"),
                    json_out: bool = JSON):
    """Move a customer to another channel (the one audited way a binding changes)."""
    from modelshop.channels.attribution import rebind

    b = rebind(_db(), customer, channel, reason=reason, actor=ACTOR)
    _show(b, json_out, f"customer {b['customer_id']} is now bound to {b['channel']}")


# --- partners and commissions ------------------------------------------------------------------------

@partners_app.command("create")
def partners_create(name: str = typer.Option(..., "--name"), kind: str = typer.Option("affiliate", "--kind"),
                    email: str = typer.Option(None, "--email"),
                    reseller_discount: str = typer.Option(None, "--reseller-discount",
                                                          help="percent: makes the partner a reseller"),
                    json_out: bool = JSON):
    """A partner (and its first channel); with --reseller-discount a reseller."""
    from modelshop.channels.partners import create_partner

    p = create_partner(_db(), name, kind=kind, email=email, reseller_discount=reseller_discount, actor=ACTOR)
    _show(p, json_out, f"partner {p['id']} {p['name']}: channel {p['channel']['code']}")


@partners_app.command("list")
def partners_list(json_out: bool = JSON):
    from modelshop.channels.partners import list_partners

    rows = list_partners(_db())
    _show(rows, json_out, "\n".join(f"{p['id']}\t{p['name']}\t{p['status']}" for p in rows) or "no partners yet")


@partners_app.command("key")
def partners_key(partner: int = typer.Option(..., "--partner"), json_out: bool = JSON):
    """A partner key (shown once)."""
    from modelshop.channels.partners import create_partner_key

    k = create_partner_key(_db(), partner, actor=ACTOR)
    _show(k, json_out, f"{k['key']}\n(shown once; keep it safe)")


@partners_app.command("rule")
def partners_rule(partner: int = typer.Option(..., "--partner"), kind: str = typer.Option(..., "--kind"),
                  percent: str = typer.Option(None, "--percent"),
                  tiers: str = typer.Option(None, "--tiers", help='volume:percent, e.g. "0:10,1000:15"'),
                  months: int = typer.Option(None, "--months", help="only the customer's first N months"),
                  bounty: str = typer.Option(None, "--bounty"), currency: str = typer.Option(None, "--currency"),
                  hold_days: int = typer.Option(None, "--hold-days"), json_out: bool = JSON):
    """A commission rule: percent (or tiers) for N months or forever, or a one-time bounty."""
    from modelshop.channels.commissions import create_rule

    conf = _settings()
    r = create_rule(_db(), partner, kind, percent=percent, tiers=tiers, months=months, bounty=bounty,
                    currency=currency or conf.channels_currency,
                    hold_days=conf.commission_hold_days if hold_days is None else hold_days, actor=ACTOR)
    _show(r, json_out, f"rule {r['id']} for partner {r['partner_id']}: {r['kind']}")


@commissions_app.command("run")
def commissions_run(json_out: bool = JSON):
    """Bring the commission ledger in line with the invoices; approve what passed its hold."""
    from modelshop.channels.commissions import run_commissions

    out = run_commissions(_db(), actor=ACTOR)
    _show(out, json_out, ", ".join(f"{k} {v}" for k, v in out.items()))


@commissions_app.command("list")
def commissions_list(partner: int = typer.Option(None, "--partner"), status: str = typer.Option(None, "--status"),
                     json_out: bool = JSON):
    from modelshop.channels.commissions import list_commissions

    out = list_commissions(_db(), partner_id=partner, status=status)
    _show(out, json_out, "\n".join(f"{e['id']}\t{e['customer']}\t{e['period']}\t{e['entry']}\t{e['amount']}"
                                   f"\t{e['status']}" for e in out["entries"]) or "no commissions")


@commissions_app.command("payout")
def commissions_payout(partner: int = typer.Option(..., "--partner"), month: str = typer.Option(..., "--month"),
                       currency: str = typer.Option(None, "--currency"),
                       csv_path: Path = typer.Option(None, "--csv", help="also write the statement as CSV here"),
                       json_out: bool = JSON):
    """The partner's payout statement for a month (made once)."""
    from modelshop.channels.commissions import payout, statement_csv

    st = payout(_db(), partner, month, currency=currency or _settings().channels_currency, actor=ACTOR)
    if csv_path:
        csv_path.write_text(statement_csv(st), encoding="utf-8")
    _show(st, json_out, f"statement {st['id']} {st['month']}: {st['total']} {st['currency']} "
                        f"({len(st['entries'])} entries)")


def register(app: typer.Typer) -> None:
    app.add_typer(channels_app, name="channels", help="Channels, tracking links, costs, attribution, the report.")
    app.add_typer(partners_app, name="partners", help="Partners and resellers, their keys and commission rules.")
    app.add_typer(commissions_app, name="commissions", help="The commission ledger and payout statements.")
