"""The labelling queue and dataset versions: labels checked against the item's choices, the
`modelshop label` and `modelshop apps dataset` commands, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelshop.apps import feedback
from modelshop.errors import NotFound, ValidationError

CHOICES = ["billing", "delivery", "refund"]


@pytest.fixture
def cli(settings, capsys):
    """Run `modelshop ...` in process on the `settings` home: (exit code, stdout, stderr)."""
    from modelshop.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_labels_are_checked_against_the_choices(settings):
    item = feedback.add_item("ds", "where is my parcel", choices=CHOICES, settings=settings)
    with pytest.raises(ValidationError, match='"delivry" is not one of the labels .*did you mean "delivery"'):
        feedback.label_item(item["id"], "delivry", settings=settings)
    with pytest.raises(ValidationError, match="label is empty"):
        feedback.label_item(item["id"], " ", settings=settings)
    with pytest.raises(NotFound, match="no labelling item 999"):
        feedback.label_item(999, "billing", settings=settings)
    assert feedback.label_item(item["id"], "tracking", allow_new=True, settings=settings)["label"] == "tracking"
    other = feedback.add_item("ds", "hello", choices=CHOICES, settings=settings)
    assert feedback.label_item(other["id"], "skip", settings=settings)["status"] == "skipped"
    assert feedback.pending("ds", settings=settings) == []
    with pytest.raises(ValidationError, match="text is empty"):
        feedback.add_item("ds", "   ", settings=settings)


def test_export_builds_versions_from_labelled_items(settings, tmp_path):
    with pytest.raises(ValidationError, match='no newly labelled items for dataset "ds" yet'):
        feedback.export_dataset("ds", settings=settings)
    base = tmp_path / "base.csv"
    base.write_text("message,intent\nrefund please,refund\nwhere is it,delivery\n")
    v1 = feedback.export_dataset("ds", base=base, settings=settings)          # a base alone starts a dataset
    assert (v1["version"], v1["rows"], v1["added"]) == (1, 2, 0)
    item = feedback.add_item("ds", "charged twice", choices=CHOICES, settings=settings)
    feedback.label_item(item["id"], "billing", settings=settings)
    v2 = feedback.export_dataset("ds", settings=settings)
    from modelshop.data import load_dataset

    loaded = load_dataset(v2["path"])
    assert loaded.texts == ["refund please", "where is it", "charged twice"] and loaded.fingerprint() == v2["sha256"]
    listed = feedback.list_datasets("ds", settings=settings)
    assert [(v["version"], v["rows"]) for v in listed] == [(1, 2), (2, 3)]
    with pytest.raises(ValidationError, match="since version 2"):
        feedback.export_dataset("ds", settings=settings)
    with pytest.raises(ValidationError, match="--base only starts a new dataset"):
        feedback.export_dataset("ds", base=base, settings=settings)


def test_label_and_dataset_commands(settings, cli):
    first = feedback.add_item("support", "I want my money back", choices=CHOICES, settings=settings)
    second = feedback.add_item("support", "parcel is late", choices=CHOICES, settings=settings)
    code, out, _ = cli("label")                      # stdin is not a terminal under pytest: a listing
    assert code == 0 and "I want my money back" in out and "parcel is late" in out
    code, out, _ = cli("label", str(first["id"]), "refund")
    assert code == 0 and out.strip() == f"item {first['id']}: labelled refund"
    code, _, err = cli("label", str(second["id"]), "refnd")
    assert code == 2 and err.strip().startswith("error: ") and 'did you mean "refund"' in err
    assert len(err.splitlines()) == 1
    code, out, _ = cli("label", "--json")
    assert [i["id"] for i in json.loads(out)] == [second["id"]]
    code, out, _ = cli("apps", "dataset", "export", "--name", "support")
    path = out.strip()
    assert code == 0 and path.endswith(".jsonl")
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    assert rows == [{"text": "I want my money back", "label": "refund"}]
    code, _, err = cli("apps", "dataset", "export", "--name", "suport")
    assert code == 2 and "no newly labelled items" in err


class _Terminal:
    """Typed answers on a stdin that says it is a terminal."""

    def __init__(self, text: str) -> None:
        import io

        self._io = io.StringIO(text)

    def isatty(self) -> bool:
        return True

    def readline(self, *args) -> str:
        return self._io.readline(*args)

    def read(self, *args) -> str:
        return self._io.read(*args)


def test_interactive_labelling_on_a_terminal(settings, cli, monkeypatch):
    a = feedback.add_item("tty", "refund my order", choices=CHOICES, settings=settings)
    b = feedback.add_item("tty", "where is the van", choices=CHOICES, settings=settings)
    c = feedback.add_item("tty", "never mind", choices=CHOICES, settings=settings)
    monkeypatch.setattr("sys.stdin", _Terminal("3\nnonsense\ndelivery\ns\n"))
    code, out, _ = cli("label", "--dataset", "tty")
    assert code == 0 and "refund my order" in out and "is not one of the labels" in out and "labelled 2" in out
    from modelshop.apps.tables import LabelItem
    from modelshop.db import get_database

    with get_database(settings).session() as s:
        rows = {i.id: (i.status, i.label) for i in s.query(LabelItem).filter(LabelItem.dataset == "tty")}
    assert rows == {a["id"]: ("labelled", "refund"), b["id"]: ("labelled", "delivery"), c["id"]: ("skipped", None)}
