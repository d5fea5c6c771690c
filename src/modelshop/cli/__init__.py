"""The `modelshop` command: a map from command names to library functions, no logic here.

Each command group is one module. What the user sees when something goes wrong:

    a typo in a command or option     typer's usage message (with its "did you mean"), exit 2
    bad input: a ModelshopError, or   `error: ...` on one line, with the fix, exit 2
      a bad MODELSHOP_* variable
    a bug or a broken environment     `error: unexpected ...` on one line and the path of a log file
                                      holding the traceback (MODELSHOP_HOME/logs/), exit 1
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import traceback
from pathlib import Path

import pydantic
import typer

from modelshop.errors import ModelshopError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="modelshop: from customers' text data to revenue.")


def _register() -> None:
    from modelshop.cli import apps, billing, channels, data, demo, label, llm, models, optimize, serve, train

    app.add_typer(data.app, name="data", help="Load, profile and clean datasets.")
    app.add_typer(models.app, name="models", help="The model registry: list, show, promote.")
    app.add_typer(llm.app, name="llm", help="Generative models: register local causal LMs, list them.")
    for group in (train, demo, serve, optimize, billing, apps, label, channels):
        group.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run one command. Returns on success (also when called in-process with `argv`), else exits."""
    try:
        # standalone mode: typer itself prints usage errors and exits 2, Ctrl-C exits 130
        app(args=argv, prog_name="modelshop")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    except ModelshopError as e:
        print(f"error: {e.message}", file=sys.stderr)
        sys.exit(2)
    except pydantic.ValidationError as e:
        if e.title != "Settings":
            _crash(e, argv)
        print(f"error: {_settings_problem(e)}", file=sys.stderr)  # a bad MODELSHOP_* variable is bad input
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line for the user, the rest in a file
        _crash(e, argv)


def _crash(e: Exception, argv: list[str] | None) -> None:
    print(f"error: unexpected {type(e).__name__}: {_first_line(e)}; the traceback is in {_crash_log(e, argv)}"
          " (please include it when you report this)", file=sys.stderr)
    sys.exit(1)


def _settings_problem(e: pydantic.ValidationError) -> str:
    """The first bad setting, named by its environment variable."""
    first = e.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return message  # a check across settings; its message names the variables
    var = "MODELSHOP_" + str(first["loc"][0]).upper()
    return f"{var}: {message} (found {first['input']!r}); set it right or unset it"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else "(no message)"
    return line if len(line) <= 300 else line[:297] + "..."


def _crash_log(e: BaseException, argv: list[str] | None) -> Path:
    """Write the traceback to MODELSHOP_HOME/logs/ (the temp folder when even that is unusable)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"cli-{stamp}-{os.getpid()}.log"
    args = sys.argv[1:] if argv is None else argv
    text = (f"modelshop {' '.join(args)}\n{dt.datetime.now(dt.UTC).isoformat()}\n\n"
            + "".join(traceback.format_exception(e)))
    for folder in _log_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return Path(os.devnull)


def _log_folders() -> list[Path]:
    try:
        from modelshop.settings import get_settings

        folders = [get_settings().home / "logs"]
    except Exception:  # noqa: BLE001 - the settings themselves may be what failed
        folders = []
    return [*folders, Path(tempfile.gettempdir()) / "modelshop-logs"]
