"""The command line: one-line errors with the fix, JSON contracts (the demo's walk: tests/scenarios/test_demo.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str, env_home=None, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "MODELSHOP_PROGRESS": "false", "HF_HUB_OFFLINE": "1"}
    if env_home:
        env["MODELSHOP_HOME"] = str(env_home)
    proc = subprocess.run([sys.executable, "-m", "modelshop", *args], capture_output=True, text=True, env=env,
                          timeout=600)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr[-2000:]
    return proc


def modelshop(*args: str, home, **env: str) -> subprocess.CompletedProcess:
    """The installed entry point itself (`.venv/bin/modelshop`), as a user runs it."""
    import os
    from pathlib import Path

    exe = Path(sys.executable).with_name("modelshop")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "modelshop"]
    env = {**os.environ, "MODELSHOP_HOME": str(home), "MODELSHOP_PROGRESS": "false", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(("content", "args", "match"), [
    ("", [], "empty"),
    ('{"txt": "a", "label": "x"}\n{"txt": "b", "label": "y"}\n', ["--text-col", "txt_"], 'did you mean "txt"'),
    ('{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', [], "one class only"),
    ('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', ["--base-model", "/no/such/dir"],
     "unknown base model"),
    ('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', ["--epochs", "0"], "epochs: must be"),
])
def test_train_bad_input_is_one_line(tmp_path, content, args, match):
    data = tmp_path / "d.jsonl"
    data.write_text(content)
    proc = run("train", "--data", str(data), "--name", "m", "--base-model", "tfidf", *args,
               env_home=tmp_path / "home", check_rc=None)
    assert match in one_line_error(proc)
    assert not list((tmp_path / "home" / "models").glob("m/v*")) if (tmp_path / "home" / "models").exists() else True


@pytest.mark.parametrize(("args", "usage", "says"), [
    (["trian"], "Usage: modelshop [OPTIONS] COMMAND", "No such command 'trian'. Did you mean 'train'?"),
    (["train", "--dat", "x.jsonl"], "Usage: modelshop train [OPTIONS]",
     "No such option: --dat (Possible options: --data)"),
    (["train"], "Usage: modelshop train [OPTIONS]", "Missing option '--data'"),
])
def test_typos_get_the_usage_message_and_status_2(tmp_path, args, usage, says):
    proc = modelshop(*args, home=tmp_path / "home")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and usage in proc.stderr and says in proc.stderr
    assert not proc.stdout


def test_an_unexpected_error_is_one_line_and_a_log_file(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "modelshop.db").write_bytes(b"this is not a database file " * 8)  # a broken environment, not a typo
    proc = modelshop("plans", "list", home=home)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: unexpected DatabaseError: ") and "file is not a database" in line
    (log,) = (home / "logs").glob("cli-*.log")
    assert str(log) in line
    text = log.read_text()
    assert text.startswith("modelshop plans list\n") and "Traceback (most recent call last)" in text
    assert "sqlite3.DatabaseError" in text


def test_a_bad_environment_variable_is_one_line_naming_it(tmp_path):
    line = one_line_error(modelshop("plans", "list", home=tmp_path / "home", MODELSHOP_PORT="eighty"))
    assert line.startswith("error: MODELSHOP_PORT: ") and "'eighty'" in line and "unset it" in line
    assert not (tmp_path / "home" / "logs").exists()


def test_non_utf8_file_is_one_line(tmp_path):
    data = tmp_path / "d.csv"
    data.write_bytes(b"text,label\ncaf\xe9 ok,x\nbad \xff\xfe,y\n")
    proc = run("data", "profile", str(data), "--tokenizer", "none", env_home=tmp_path / "home", check_rc=None)
    assert "UTF-8" in one_line_error(proc)


def test_train_eval_predict_json_contract(tmp_path, toy_data):
    train, evaluation = toy_data
    home = tmp_path / "home"
    out = json.loads(run("train", "--data", str(train), "--eval", str(evaluation), "--base-model", "tfidf",
                         "--name", "t", "--json", env_home=home).stdout)
    assert {"name", "version", "accuracy", "macro_f1", "per_class"} <= out.keys()
    ev = json.loads(run("eval", "--model", "t:1", "--data", str(evaluation), "--json", env_home=home).stdout)
    assert ev["macro_f1"] == out["macro_f1"] and set(ev["per_class"]) == set(out["per_class"])
    pred = run("predict", "--model", "t", "awful, broken, refund", env_home=home).stdout
    assert pred.startswith("bad\t")
    listed = json.loads(run("models", "list", "--json", env_home=home).stdout)
    assert [(m["name"], m["version"], m["stage"]) for m in listed] == [("t", 1, "production")]
    missing = run("predict", "--model", "tt", "x", env_home=home, check_rc=None)
    assert 'did you mean "t"' in one_line_error(missing)


def test_data_profile_json_and_report(tmp_path, toy_data):
    train, evaluation = toy_data
    prof = json.loads(run("data", "profile", str(train), "--eval", str(evaluation), "--tokenizer", "none",
                          "--report", str(tmp_path / "r"), "--json").stdout)
    assert prof["rows"] == 60 and prof["num_labels"] == 2
    assert prof["exact_duplicates"]["count"] > 0 and prof["leakage"]["exact"] > 0
    assert (tmp_path / "r" / "report.html").is_file()


@pytest.mark.slow
def test_real_minilm_learns_the_demo_data(tmp_path):
    """The real all-MiniLM-L6-v2 weights fine-tune well above chance (1/8) on the bundled data."""
    from modelshop.demo import DATA

    out = json.loads(run("train", "--data", str(DATA), "--name", "real", "--base-model", "minilm", "--epochs", "2",
                         "--learning-rate", "2e-4", "--batch-size", "16", "--json", env_home=tmp_path / "h").stdout)
    assert out["macro_f1"] > 0.4, out["macro_f1"]
    assert out["baseline"]["macro_f1"] > 0.3 and out["recommended"] in {"transformer", "tfidf", "ensemble"}


def test_score_out_into_a_missing_folder_is_one_line_and_leaves_nothing(settings, toy_data, tmp_path, capsys):
    from modelshop.cli import main
    from modelshop.train import TrainConfig, run_training

    train, _ = toy_data
    run_training(train, name="t", cfg=TrainConfig(base_model="tfidf"), settings=settings)
    for out, says in ((tmp_path / "no" / "such" / "scored.jsonl", "output folder"),
                      (tmp_path, "is a folder; name a file in it")):
        with pytest.raises(SystemExit) as e:
            main(["score", "--model", "t", "--data", str(train), "--out", str(out)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert not (tmp_path / "no").exists()
    with pytest.raises(SystemExit):  # fails after the .partial file was opened: it is removed again
        main(["score", "--model", "t", "--data", str(train), "--out", str(tmp_path / "s.jsonl"), "--text-col", "txt"])
    assert 'no text column "txt"' in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.partial")) and not (tmp_path / "s.jsonl").exists()
    main(["score", "--model", "t", "--data", str(train), "--out", str(tmp_path / "s.jsonl"), "--json"])
    assert json.loads(capsys.readouterr().out)["rows"] == 60
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 60


def commands() -> dict[str, object]:
    """Every leaf command of `modelshop`, by its full name."""
    import typer

    from modelshop.cli import app

    found: dict[str, object] = {}

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name]) if hasattr(sub, "commands") else found.setdefault(" ".join([*path, name]), sub)

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_that_prints_a_result_has_json():
    found = commands()
    assert len(found) > 60 and {"train", "apps faq promote", "apps bot say", "apps tickets reply"} <= found.keys()
    # `serve` prints where it listens and then serves until stopped: no result to print
    missing = [name for name, cmd in found.items() if name != "serve"
               and "--json" not in [o for p in cmd.params for o in p.opts]]
    assert not missing


def test_option_names_match_the_http_api_and_old_spellings_still_work(settings, capsys):
    from modelshop.cli import main

    rec = commands()["apps recommend for"]
    shown = {o for p in rec.params if not getattr(p, "hidden", False) for o in p.opts}
    assert {"--model", "--top-k"} <= shown and not {"--name", "-k"} & shown   # GET /apps/recommend/{user}?k=&model=
    assert {"--model", "--top-k"} <= {o for p in commands()["predict"].params for o in p.opts}
    for args, says in ((["--top-k", "0"], "k must be a whole number from 1 to 100, got 0"),
                       (["-k", "0"], "k must be a whole number from 1 to 100, got 0"),
                       (["--model", "shelf"], 'no recommender named "shelf"'),
                       (["--name", "shelf"], 'no recommender named "shelf"'),
                       (["--model", "a", "--name", "b"], "--model and --name are the same option")):
        with pytest.raises(SystemExit) as e:
            main(["apps", "recommend", "for", "u1", *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and says in err, err
