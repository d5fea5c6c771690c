"""The `modelshop` command: a map from command names to library functions, no logic here.

Each command group is one module. Errors of ours print as one line, `error: ...`, exit status 2.
"""

from __future__ import annotations

import sys

import typer

from modelshop.errors import ModelshopError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="modelshop: from customers' text data to revenue.")


def _register() -> None:
    from modelshop.cli import apps, billing, channels, data, demo, label, models, optimize, serve, train

    app.add_typer(data.app, name="data", help="Load, profile and clean datasets.")
    app.add_typer(models.app, name="models", help="The model registry: list, show, promote.")
    for group in (train, demo, serve, optimize, billing, apps, label, channels):
        group.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except ModelshopError as e:
        print(f"error: {e.message}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except (typer.BadParameter, typer.Exit) as e:  # click usage errors are handled below
        raise e
    except Exception as e:  # click's own usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise
