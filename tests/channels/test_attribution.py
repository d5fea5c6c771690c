"""Touches, first-/last-touch binding inside the window, links by utm_*, and bindings that never move silently."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from modelshop.billing import accounts, audit
from modelshop.channels import attribution, channels
from modelshop.channels.tables import Attribution, Touch, Visit
from modelshop.errors import Conflict, NotFound, ValidationError
from tests.support import ACTOR, make_plan

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


def _shop(db):
    make_plan(db, "payg", unit_price="0.01")
    news = channels.create_channel(db, "Newsletter", "campaign", actor=ACTOR)
    aff = channels.create_channel(db, "Blog Partner", "affiliate", code="blogger", actor=ACTOR)
    channels.create_link(db, news["code"], with_ref=False, utm_source="newsletter", actor=ACTOR)
    channels.create_link(db, news["code"], with_ref=False, utm_source="newsletter", utm_campaign="spring", actor=ACTOR)
    return db, news, aff


@pytest.fixture
def shop(db):
    return _shop(db)


def visit(db, visitor, days_before, **params):
    return attribution.record_visit(db, visitor, "/store/m", attribution.tracking_params(params),
                                    now=NOW - dt.timedelta(days=days_before))


def signup(db, settings, visitor, **kw):
    cid = accounts.create_customer(db, f"c-{(visitor or 'anon')[:6]}", "payg", actor=ACTOR)["id"]
    return attribution.bind_customer(db, settings, cid, visitor, now=NOW, **kw)


def test_first_touch_by_default_last_touch_by_setting(shop, settings):
    db, news, aff = shop
    v = attribution.new_visitor_id()
    assert visit(db, v, 30, ref="BLOGGER") == aff["id"]       # codes are case-insensitive
    assert visit(db, v, 10, utm_source="newsletter") == news["id"]
    assert visit(db, v, 5) is None                              # a plain visit is no touch
    assert signup(db, settings, v)["channel"] == "blogger"
    last = settings.model_copy(update={"attribution_model": "last"})
    assert signup(db, last, v)["channel"] == news["code"]


def test_touches_outside_the_window_do_not_count(shop, settings):
    db, _news, _aff = shop
    v = attribution.new_visitor_id()
    visit(db, v, 61, ref="blogger")
    bound = signup(db, settings, v)
    assert (bound["channel"], bound["model"]) == ("direct", "direct")
    wide = settings.model_copy(update={"attribution_window_days": 90})
    assert signup(db, wide, v)["channel"] == "blogger"


def test_links_match_the_most_specific_utm_set(shop):
    db, news, _aff = shop
    with db.session() as s:
        found = attribution.resolve(s, {"utm_source": "newsletter", "utm_campaign": "spring", "utm_medium": "email"})
        assert found[0].code == news["code"] and found[1].utm_campaign == "spring"
        assert attribution.resolve(s, {"utm_source": "newsletter"})[1].utm_campaign is None
        assert attribution.resolve(s, {"utm_source": "twitter"}) is None
        assert attribution.resolve(s, {"ref": "nosuchcode"}) is None


def _rows(db, table) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(table))


def test_a_visitor_lands_once_per_page_and_a_reload_adds_no_touch(shop, settings):
    db, news, _aff = shop
    v = attribution.new_visitor_id()
    for hours in (0, 1, 2):  # the same page three times the same day, through the same link
        assert visit(db, v, 3 - hours / 24, utm_source="newsletter") == news["id"]
    assert (_rows(db, Visit), _rows(db, Touch)) == (1, 1)
    attribution.record_visit(db, v, "/store/other", {}, now=NOW - dt.timedelta(days=3))
    assert _rows(db, Visit) == 2
    visit(db, v, 2.5, ref="blogger")           # another channel: a touch
    visit(db, v, 2.4, utm_source="newsletter")  # back to the first one: a touch again (last touch moves)
    visit(db, v, 1, utm_source="newsletter")    # the next day: a touch again (the window counts from it)
    assert (_rows(db, Visit), _rows(db, Touch)) == (2, 4)
    last = settings.model_copy(update={"attribution_model": "last"})
    assert signup(db, settings, v)["channel"] == news["code"] and signup(db, last, v)["channel"] == news["code"]


def test_the_migration_keeps_each_visitors_first_view_of_a_page(tmp_path):
    from modelshop.db import Database
    from modelshop.db.migrate import upgrade

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db.engine, "channels_0002")
    rows = [("v1", "/store", "2026-05-01 10:00:00"), ("v1", "/store", "2026-05-02 10:00:00"),
            ("v1", "/store/m", "2026-05-03 10:00:00"), ("v2", "/store", "2026-05-04 10:00:00")]
    with db.engine.begin() as c:
        for row in rows:
            c.exec_driver_sql("insert into channels_visits (visitor_id, path, occurred_at) values (?, ?, ?)", row)
    db.migrate()
    with db.engine.connect() as c:
        kept = c.exec_driver_sql("select visitor_id, path, occurred_at from channels_visits order by id").all()
    assert [tuple(r) for r in kept] == [rows[0], *rows[2:]]
    attribution.record_visit(db, "v1", "/store", {})  # and a repeat stays one row from now on
    assert _rows(db, Visit) == 3


def test_the_signup_request_itself_can_carry_the_channel(shop, settings):
    db, _news, aff = shop
    bound = signup(db, settings, None, params={"ref": "blogger"})
    assert bound["channel_id"] == aff["id"] and bound["touch_id"] is not None


def test_a_binding_never_changes_silently(shop, settings):
    db, news, _aff = shop
    v = attribution.new_visitor_id()
    visit(db, v, 1, ref="blogger")
    bound = signup(db, settings, v)
    cid = bound["customer_id"]
    with pytest.raises(Conflict, match="already bound"):
        attribution.bind_customer(db, settings, cid, v, params={"utm_source": "newsletter"})
    with pytest.raises(Conflict, match="bound once at signup"), db.session() as s:
        s.get(Attribution, cid).channel_id = news["id"]
    with pytest.raises(Conflict, match="never deleted"), db.session() as s:
        s.delete(s.get(Attribution, cid))
    with pytest.raises(ValidationError, match="reason"):
        attribution.rebind(db, cid, news["code"], reason=" ", actor=ACTOR)
    moved = attribution.rebind(db, cid, news["code"], reason="partner agreement ended", actor="admin:env")
    assert (moved["channel"], moved["model"]) == (news["code"], "admin")
    entry = audit.entries(db, entity="customer", entity_id=cid)[0]
    assert entry["action"] == "attribution.rebind" and entry["actor"] == "admin:env"
    assert entry["detail"] == {"channel": news["code"], "previous": "blogger", "reason": "partner agreement ended"}
    with db.session() as s:
        assert s.scalar(select(Attribution.channel_id).where(Attribution.customer_id == cid)) == news["id"]


def test_signup_makes_customer_binding_and_key(shop, settings):
    db, _news, aff = shop
    v = attribution.new_visitor_id()
    visit(db, v, 2, ref="blogger", utm_source="x")
    out = attribution.signup(db, settings, email="Ann@Example.com", plan="payg", visitor_id=v, now=NOW)
    assert out["customer"]["email"] == "ann@example.com" and out["key"]["key"].startswith("ms_live_")  # normalised
    assert out["attribution"]["channel_id"] == aff["id"]
    with pytest.raises(Conflict, match="already has an account"):
        attribution.signup(db, settings, email="ann@example.com", plan="payg", visitor_id=v)
    with pytest.raises(ValidationError, match='email: "nope" is not an e-mail address'):
        attribution.signup(db, settings, email="nope", plan="payg", visitor_id=v)


@pytest.mark.parametrize("call, message", [
    (lambda db: channels.create_channel(db, "X", "afiliate", actor=ACTOR), 'did you mean "affiliate"'),
    (lambda db: channels.create_channel(db, "X", "campaign", code="Bad Code!", actor=ACTOR), "lower-case letters"),
    (lambda db: channels.create_channel(db, "X", "campaign", code="blogger", actor=ACTOR), "already the referral code"),
    (lambda db: channels.create_link(db, "blogger", with_ref=False, actor=ACTOR), "at least one utm_"),
    (lambda db: channels.create_link(db, "blogger", landing="https://evil.example", actor=ACTOR), "must be a path"),
    (lambda db: channels.create_link(db, "bloger", actor=ACTOR), 'did you mean "blogger"'),
    (lambda db: channels.set_cost(db, "blogger", "2026-13", "1", actor=ACTOR), "YYYY-MM"),
    (lambda db: channels.set_cost(db, "blogger", "2026-05", "1.001", actor=ACTOR), "decimal places"),
    (lambda db: channels.set_cost(db, "blogger", "2026-05", "1", kind="ads", actor=ACTOR), "not one of ad_spend"),
])
def test_bad_input_is_one_clear_line(sqlite_db, call, message):
    _shop(sqlite_db)
    with pytest.raises((ValidationError, NotFound), match=message):
        call(sqlite_db)


def test_costs_set_and_imported_idempotently(shop):
    db, news, _aff = shop
    text = ("channel,month,kind,amount,currency,note\n"
            f"{news['code']},2026-06,ad_spend,1200.50,USD,spring mailing\n"
            "blogger,2026-06,partner_fee,300,,\n")
    assert channels.import_costs_csv(db, text, actor=ACTOR)["imported"] == 2
    channels.import_costs_csv(db, text, actor=ACTOR)
    costs = channels.list_costs(db, month="2026-06")
    assert [(c["channel"], c["kind"], c["amount"]) for c in costs] == [
        ("blogger", "partner_fee", "300.00"), (news["code"], "ad_spend", "1200.50")]
    with pytest.raises(NotFound, match="costs CSV line 3: channel \"nobody\" does not exist"):
        channels.import_costs_csv(db, "channel,month,amount\nblogger,2026-07,1\nnobody,2026-07,2\n", actor=ACTOR)
    with pytest.raises(ValidationError, match="costs CSV line 2: amount"):
        channels.import_costs_csv(db, "channel,month,amount\nblogger,2026-07,-1\n", actor=ACTOR)
    assert channels.list_costs(db, month="2026-07") == []  # all rows or none


def test_costs_csv_with_old_mac_line_ends(shop):
    """Found by fuzzing: a bare \\r line end once crashed the CSV reader (500)."""
    db, news, _aff = shop
    text = f"channel,month,amount\r{news['code']},2026-08,10\r"
    assert channels.import_costs_csv(db, text, actor=ACTOR)["imported"] == 1
