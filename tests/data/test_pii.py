"""find_pii / redact_pii: each kind found, validated by its check digit, and nothing else."""

from __future__ import annotations

import time

import pytest

from modelshop.data import find_pii, redact_pii
from modelshop.data.pii import id_card_valid, luhn_valid


@pytest.mark.parametrize(("text", "kinds", "redacted"), [
    ("write to john.doe+shop@example.co.uk today", {"email": 1}, "write to [EMAIL] today"),
    ("我的手机13812345678，谢谢", {"phone": 1}, "我的手机[PHONE]，谢谢"),
    ("电话 +86 139 1234 5678 或 0086-150-1234-5678", {"phone": 2}, "电话 [PHONE] 或 [PHONE]"),
    ("call (555) 123-4567 or 555.123.4567", {"phone": 2}, "call [PHONE] or [PHONE]"),
    ("US +1 555 123 4567, UK +44 20 7946 0958", {"phone": 2}, "US [PHONE], UK [PHONE]"),
    ("身份证号11010519491231002X已登记", {"id_card": 1}, "身份证号[ID_CARD]已登记"),
    ("pay with 4111 1111 1111 1111 or 5500-0055-5555-5559", {"card": 2}, "pay with [CARD] or [CARD]"),
    ("QQ邮箱13812345678@qq.com", {"email": 1}, "QQ邮箱[EMAIL]"),
    # found since phones come from `phonenumbers`: Chinese landlines, "00" international prefixes
    ("北京 010-6552-9988 或 (0755) 8765 4321", {"phone": 2}, "北京 [PHONE] 或 [PHONE]"),
    ("上海 021-6234 5678, London 0044 20 7946 0958", {"phone": 2}, "上海 [PHONE], London [PHONE]"),
    ("Seoul +82 10-1234-5678, Paris +33 1 42 68 53 00", {"phone": 2}, "Seoul [PHONE], Paris [PHONE]"),
    # cards of 13 and 15 digits are not read as (long) phone numbers
    ("Amex 3782 822463 10005, Visa 4222222222222", {"card": 2}, "Amex [CARD], Visa [CARD]"),
    # a date or time right beside a number must not hide it from the matcher
    ("2024/01/15 13812345678 张三, 10:30 (202) 456-1111", {"phone": 2}, "2024/01/15 [PHONE] 张三, 10:30 [PHONE]"),
])
def test_found_and_redacted(text: str, kinds: dict, redacted: str) -> None:
    assert find_pii(text) == kinds
    assert redact_pii(text) == redacted


@pytest.mark.parametrize("text", [
    "身份证号110105194912310021",  # wrong check digit
    "card 4111 1111 1111 1112",  # fails Luhn
    "order 20240115 on 2024-01-15, 1,234,567 units, v1.2.3, ip 192.168.1.1",
    "订单号2023138123456789012",  # a mobile number inside a longer digit run is not one
    "score 12-10 in 1999, room 101",
    "email at example dot com, @handle",
    "code +12 3456 7890",  # no country has the code +12
    "invoice 2023-000123, won (7-5) 4-6 6-3 4-6 6-0",  # valid digits as Chinese landlines, but no leading 0
    "ticket 000-300, timestamp 1701388800",
])
def test_not_personal_data(text: str) -> None:
    assert find_pii(text) == {}
    assert redact_pii(text) == text


def test_check_digits() -> None:
    assert id_card_valid("11010519491231002X") and id_card_valid("11010519491231002x")
    assert not id_card_valid("110105194912310021")
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_one_megabyte_is_fast() -> None:
    # CPU time, not wall time: the limit is about linear time, not about what else shares the machine
    text = ("客户 alice@example.com 电话13812345678 paid 4111111111111111 on 2024-01-05. " * 15_000)[:1_000_000]
    start = time.process_time()
    found = find_pii(text)
    assert time.process_time() - start < 5
    assert found == {"email": 13_889, "phone": 13_889, "card": 13_889}
    for hostile in ("a" * 1_000_000, "1" * 1_000_000, "a@" * 500_000, "+1 " * 300_000):
        start = time.process_time()
        find_pii(hostile)
        assert time.process_time() - start < 5, hostile[:5]
