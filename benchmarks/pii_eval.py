"""Phone numbers in text: `phonenumbers` (what modelshop.data.pii uses) against the hand-written regex it replaced.

Recall: numbers of many countries and shapes, generated from real numbering ranges (digits drawn at
random after a real prefix, so some fall in ranges a plan has not assigned), planted one per text in
English and Chinese sentences around rotten_tomatoes reviews; a number counts as found when exactly
its characters are reported. False positives: phones reported in texts that hold none — every
rotten_tomatoes and bbc_news text as it is (news is full of figures, dates and scores; each hit is
printed to judge), and hand-written look-alikes (dates, money, IPs, versions, ISBNs, order ids,
timestamps). Speed: CPU seconds over all those texts.

    .venv/bin/python benchmarks/pii_eval.py
    .venv/bin/python benchmarks/pii_eval.py --per-family 100 --show 20
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from modelshop.data.pii import _phone_spans

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# The detector modelshop used before (src/modelshop/data/pii.py at 8cb1bc8), kept here as the baseline.
_OLD_PHONE = re.compile(
    r"(?<![0-9+])(?:"
    r"(?:(?:\+|00)86[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})"  # Chinese mobile
    r"|(?:\+?1[ .-]?)?\([2-9][0-9]{2}\)[ .-]?[0-9]{3}[ .-][0-9]{4}"            # (555) 123-4567
    r"|(?:\+?1[ .-])?[2-9][0-9]{2}[.-][0-9]{3}[.-][0-9]{4}"                   # 555-123-4567
    r"|\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}"                       # +44 20 7946 0958
    r")(?![0-9])"
)


def old_phone_spans(text: str) -> Iterator[tuple[int, int]]:
    for m in _OLD_PHONE.finditer(text):
        if 7 <= sum(ch.isdigit() for ch in m.group()) <= 15:
            yield m.span()


METHODS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {"regex (before)": old_phone_spans,
                                                                   "phonenumbers": _phone_spans}


def d(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


CN_MOBILE = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "156",
             "157", "158", "159", "166", "176", "177", "178", "180", "181", "186", "187", "188", "189", "191",
             "198", "199"]
US_AREA = ["201", "202", "212", "213", "305", "312", "404", "415", "512", "617", "646", "702", "718", "773", "808",
           "917"]


def families(rng: random.Random) -> dict[str, Callable[[], str]]:
    """Generators of phone numbers as people write them, one per family."""
    def cn_mobile():
        n = rng.choice(CN_MOBILE) + d(rng, 8)
        return rng.choice([n, f"{n[:3]} {n[3:7]} {n[7:]}", f"{n[:3]}-{n[3:7]}-{n[7:]}", f"+86 {n}",
                           f"+86 {n[:3]} {n[3:7]} {n[7:]}", f"0086-{n[:3]}-{n[3:7]}-{n[7:]}", f"+86-{n}"])

    def cn_landline():
        area, local = rng.choice([("010", 8), ("021", 8), ("020", 8), ("0755", 8), ("0571", 8), ("028", 8)])
        n = str(rng.randint(2, 8)) + d(rng, local - 1)
        return rng.choice([f"{area}-{n}", f"({area}) {n}", f"{area} {n[:4]} {n[4:]}", f"+86 {area[1:]} {n}"])

    def us():
        a, e, n = rng.choice(US_AREA), str(rng.randint(2, 9)) + d(rng, 2), d(rng, 4)
        return rng.choice([f"({a}) {e}-{n}", f"{a}-{e}-{n}", f"{a}.{e}.{n}", f"+1 {a} {e} {n}", f"+1-{a}-{e}-{n}",
                           f"1-{a}-{e}-{n}", f"({a}) 555-01{d(rng, 2)}"])

    def international():
        return rng.choice([
            lambda: f"+44 20 {d(rng, 4)} {d(rng, 4)}", lambda: f"+44 7{d(rng, 3)} {d(rng, 6)}",
            lambda: f"+49 30 {d(rng, 7)}", lambda: f"+49 151 {d(rng, 8)}",
            lambda: f"+33 1 {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
            lambda: f"+33 6 {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
            lambda: f"+81 3-{d(rng, 4)}-{d(rng, 4)}", lambda: f"+81 90-{d(rng, 4)}-{d(rng, 4)}",
            lambda: f"+91 9{d(rng, 4)} {d(rng, 5)}", lambda: f"+55 11 9{d(rng, 4)}-{d(rng, 4)}",
            lambda: f"+61 2 {d(rng, 4)} {d(rng, 4)}", lambda: f"+61 4{d(rng, 2)} {d(rng, 3)} {d(rng, 3)}",
            lambda: f"+7 495 {d(rng, 3)}-{d(rng, 2)}-{d(rng, 2)}",
            lambda: f"+34 6{d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
            lambda: f"+65 {rng.choice('689')}{d(rng, 3)} {d(rng, 4)}",
            lambda: f"+852 {rng.choice('5689')}{d(rng, 3)} {d(rng, 4)}",
            lambda: f"+886 9{d(rng, 2)} {d(rng, 3)} {d(rng, 3)}", lambda: f"+82 10-{d(rng, 4)}-{d(rng, 4)}",
        ])()

    def national_elsewhere():  # without the country code: no detector can know the country
        return rng.choice([f"020 7{d(rng, 3)} {d(rng, 4)}", f"07{d(rng, 3)} {d(rng, 6)}", f"030 {d(rng, 7)}",
                           f"01 {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}", f"03-{d(rng, 4)}-{d(rng, 4)}",
                           f"090-{d(rng, 4)}-{d(rng, 4)}"])

    return {"CN mobile": cn_mobile, "CN landline": cn_landline, "US / NANP": us,
            "international +CC": international, "national, other countries": national_elsewhere}


TEMPLATES = ["{s} Call me at {n} if you want to talk.", "{s} my number: {n}", "Reach us on {n}. {s}",
             "我的电话是{n}，谢谢。{s}", "{s} 联系方式 {n} (工作日)", "客户来电 {n}：{s}",
             "2024/01/15 {n} {s}", "{s} called 10:30, {n}"]  # a date or time beside the number

LOOKALIKES = ["on 2024-01-15 at 10:30", "dated 15/01/2024", "order 20240115", "1,234,567 units sold",
              "$12,345.67 total", "ip 192.168.1.1", "v1.2.3 released", "ISBN 978-3-16-148410-0",
              "timestamp 1701388800", "order #4410023987", "invoice 2023-000123", "score 12-10 in 1999",
              "from 1999-2004", "12.5 x 30.0 cm", "zip 94103-1234", "ticket 100200300400", "pop. 1 420 000 000",
              "GDP rose 2.1% to 21,433,225 million", "tracking 1Z999AA10123456784", "serial SN 2048 4096 8192"]


def rows(name: str) -> list[str]:
    out = []
    for path in sorted((DATASETS / name).glob("*.jsonl")):
        for line in path.read_text().split("\n"):  # not splitlines: some texts hold U+2028
            if line.strip():
                out.append(json.loads(line)["text"])
    return out


def found(method, text: str) -> list[str]:
    return [text[a:b] for a, b in method(text)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-family", type=int, default=300, help="planted numbers per family")
    p.add_argument("--show", type=int, default=10, help="false positives printed per method and corpus")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    reviews = rows("rotten_tomatoes")
    planted: dict[str, list[tuple[str, str]]] = {}
    for family, make in families(rng).items():
        planted[family] = []
        for _ in range(args.per_family):
            number = make()
            planted[family].append((rng.choice(TEMPLATES).format(s=rng.choice(reviews), n=number), number))
    clean = {"rotten_tomatoes": reviews, "bbc_news": rows("bbc_news"), "look-alikes": LOOKALIKES}

    print(f"recall: {args.per_family} planted numbers per family (found = exactly the number's characters)")
    print(f"  {'family':28s}" + "".join(f"{m:>16s}" for m in METHODS))
    totals = dict.fromkeys(METHODS, 0)
    for family, items in planted.items():
        line = f"  {family:28s}"
        for m, method in METHODS.items():
            hits = sum(number in found(method, text) for text, number in items)
            totals[m] += hits if family != "national, other countries" else 0
            line += f"{hits / len(items):16.3f}"
        print(line)
    n = sum(len(v) for f, v in planted.items() if f != "national, other countries")
    print(f"  {'all but national elsewhere':28s}" + "".join(f"{totals[m] / n:16.3f}" for m in METHODS))

    print("\nfalse positives: phones reported in texts that hold none")
    print(f"  {'corpus':28s} {'texts':>7s}" + "".join(f"{m:>16s}" for m in METHODS))
    shown: dict[str, list[str]] = {}
    for corpus, texts in clean.items():
        line = f"  {corpus:28s} {len(texts):7d}"
        for m, method in METHODS.items():
            hits = [h for t in texts for h in found(method, t)]
            shown[f"{m} on {corpus}"] = hits
            line += f"{len(hits):16d}"
        print(line)
    for key, hits in shown.items():
        if hits:
            print(f"  {key}: {hits[:args.show]}{' …' if len(hits) > args.show else ''}")

    every = [t for items in planted.values() for t, _ in items] + [t for ts in clean.values() for t in ts]
    size = sum(len(t.encode()) for t in every) / 1e6
    print(f"\nspeed over all {len(every)} texts ({size:.1f} MB), CPU seconds:")
    for m, method in METHODS.items():
        started = time.process_time()
        for t in every:
            list(method(t))
        print(f"  {m:28s} {time.process_time() - started:7.2f}")


if __name__ == "__main__":
    main()
