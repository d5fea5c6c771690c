"""The registry: versions, stages, lineage, and no half-written version ever visible."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from sqlalchemy import event

from modelshop.errors import NotFound, ValidationError
from modelshop.registry import META_FILE, Registry


def _build(reg: Registry, marker: str = "x"):
    folder = reg.incoming_dir()
    (folder / META_FILE).write_text(json.dumps({"family": "tfidf", "labels": ["a", "b"]}))
    (folder / "weights.bin").write_text(marker)
    return folder


def _register(reg: Registry, name: str = "m", marker: str = "x"):
    return reg.register(name, _build(reg, marker), family="tfidf", format="sklearn", base_model="tfidf",
                        labels=["a", "b"], multi_label=False, metrics={"macro_f1": 0.5})


def test_first_version_is_production_later_ones_wait(settings):
    reg = Registry.from_settings(settings)
    v1, v2 = _register(reg), _register(reg)
    assert (v1.version, v1.stage, v2.version, v2.stage) == (1, "production", 2, "staging")
    assert reg.get("m").version == 1  # the bare name means production
    reg.promote("m:2")
    assert [(r.version, r.stage) for r in reg.list("m")] == [(1, "archived"), (2, "production")]
    assert (reg.path(reg.get("m")) / "weights.bin").read_text() == "x"


def test_unknown_names_and_versions_say_what_exists(settings):
    reg = Registry.from_settings(settings)
    with pytest.raises(NotFound, match="no model is registered yet"):
        reg.get("nope")
    _register(reg, "sentiment")
    with pytest.raises(NotFound, match='did you mean "sentiment"'):
        reg.get("sentimnt")
    with pytest.raises(NotFound, match="has no version 7"):
        reg.get("sentiment:7")
    with pytest.raises(ValidationError, match="NAME:VERSION"):
        reg.get("sentiment:latest")
    with pytest.raises(ValidationError, match="not one of staging, production, archived"):
        reg.promote("sentiment:1", "prod")


def test_crash_between_move_and_commit_leaves_nothing_visible(settings):
    """An orphan folder (files moved, row never committed) is invisible; the next save goes beside it.

    It is not removed: from outside it looks the same as the folder of a writer about to commit."""
    reg = Registry.from_settings(settings)
    orphan = settings.models_dir / "m" / "v1"
    orphan.mkdir(parents=True)
    (orphan / "weights.bin").write_text("half")
    with pytest.raises(NotFound):
        reg.get("m")
    row = _register(reg, marker="whole")
    assert row.version == 1 and reg.path(row) != orphan
    assert (reg.path(row) / "weights.bin").read_text() == "whole"
    assert (orphan / "weights.bin").read_text() == "half"
    assert reg.path(_register(reg, marker="next")) == settings.models_dir / "m" / "v2"


def test_registration_records_each_files_sha256(settings):
    reg = Registry.from_settings(settings)
    folder = _build(reg, "x")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("a b")
    row = reg.register("m", folder, family="tfidf", format="sklearn", base_model="tfidf", labels=["a", "b"],
                       multi_label=False, metrics={})
    expected = {"weights.bin": hashlib.sha256(b"x").hexdigest(),
                "tokenizer/vocab.txt": hashlib.sha256(b"a b").hexdigest()}
    assert reg.get("m:1").files_sha256 == expected  # in the row, read back from the database
    assert reg.meta(row)["files_sha256"] == expected  # and beside the files


def test_racing_registrations_of_one_name_get_two_versions_and_keep_both_folders(settings):
    """Both writers read "no version yet" before either commits (held there by a hook on the real
    engine), so both try v1: one gets it, the other v2, each folder whole and its own, and no row is
    ever visible before its folder is complete."""
    reg = Registry.from_settings(settings)
    both_read = threading.Barrier(2, timeout=20)
    held: set[int] = set()

    def hold_first_read(conn, cursor, statement, parameters, context, executemany):
        if "max(model_versions.version)" in statement.lower() and threading.get_ident() not in held:
            held.add(threading.get_ident())
            both_read.wait()

    builds = {marker: _build(reg, marker) for marker in ("one", "two")}
    rows, errors, seen_broken = {}, [], []
    done = threading.Event()

    def write(marker):
        try:
            rows[marker] = reg.register("m", builds[marker], family="tfidf", format="sklearn", base_model="tfidf",
                                        labels=["a", "b"], multi_label=False, metrics={})
        except Exception as e:  # reported by the assertion below
            errors.append(repr(e))

    def watch():
        while not done.is_set():
            for row in reg.list("m"):
                folder = reg.path(row)
                if not (folder / META_FILE).is_file() or not (folder / "weights.bin").is_file():
                    seen_broken.append(row.ref)

    event.listen(reg.db.engine, "after_cursor_execute", hold_first_read)
    try:
        watcher = threading.Thread(target=watch)
        writers = [threading.Thread(target=write, args=(m,)) for m in builds]
        watcher.start()
        for t in writers:
            t.start()
        for t in writers:
            t.join(60)
    finally:
        done.set()
        watcher.join(10)
        event.remove(reg.db.engine, "after_cursor_execute", hold_first_read)
    assert len(held) == 2 and errors == [] and seen_broken == []
    assert sorted(r.version for r in rows.values()) == [1, 2]
    for marker, row in rows.items():
        assert (reg.path(reg.get(row.ref)) / "weights.bin").read_text() == marker
    assert [r.version for r in reg.list("m")] == [1, 2]
    assert not list((settings.models_dir / ".incoming").iterdir())


def test_unfinished_folder_is_refused(settings):
    reg = Registry.from_settings(settings)
    folder = reg.incoming_dir()
    with pytest.raises(ValidationError, match="not a finished model folder"):
        reg.register("m", folder, family="tfidf", format="sklearn", base_model="tfidf", labels=["a"],
                     multi_label=False, metrics={})
    assert reg.list() == []


def test_bad_names_are_refused(settings):
    with pytest.raises(ValidationError, match="not allowed"):
        _register(Registry.from_settings(settings), name="../evil")
