"""The ``timeline`` command: serve, import, rebuild, verify, export, restore, draft, tokens, db, openapi.

Each command parses its arguments, calls the library and prints the outcome; errors are one line on standard
error with an exit code from ``console.Exit``, never a traceback. The commands live by job in ``serving``,
``log`` and ``admin``; this module holds the group and the entry point.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from timeline.cli import admin, keys, log, projecting, serving
from timeline.cli.common import Group
from timeline.console import CommandError, Exit, database_error, error
from timeline.store import DEFAULT_URL


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # importlib.metadata is read only when asked: it is a tenth of the command line's start-up.
    if not value or ctx.resilient_parsing:
        return
    import importlib.metadata

    try:
        version = importlib.metadata.version("timeline")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        version = "unknown"
    click.echo(f"timeline {version}")
    ctx.exit()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--database-url",
    envvar="TIMELINE_DATABASE_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="sqlite:///PATH or postgresql://USER@HOST/DB (or $TIMELINE_DATABASE_URL)",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str) -> None:
    """An event-sourced ledger of attributed claims, served over HTTP."""
    ctx.obj = database_url


for command in (
    serving.serve,
    projecting.project,
    serving.import_,
    serving.rebuild,
    log.verify,
    log.export,
    log.restore,
    admin.draft,
    admin.tokens_group,
    keys.keys_group,
    admin.db_group,
    admin.openapi,
):
    cli.add_command(command)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script: eval "$(timeline completion bash)"."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # every choice has one
    click.echo(complete(cli, {}, "timeline", "_TIMELINE_COMPLETE").source())


# Entry point ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timeline`` console script: run a command and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    url = _url_of(args)
    try:
        result = cli.main(args=args, prog_name="timeline", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, --version
        return done.exit_code
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "timeline"
        error(f"{exc.format_message()} (see {command} --help)")
        return Exit.USAGE
    except (click.Abort, KeyboardInterrupt):
        error("interrupted")
        return Exit.INTERRUPTED
    except click.ClickException as exc:
        error(exc.format_message())
        return Exit.INPUT
    except CommandError as exc:
        error(exc.message)
        return exc.code
    except Exception as exc:
        # Imported here: a command that met neither has not loaded them (nor should --help).
        from timeline.fixtures import FixtureError
        from timeline.store.eventlog import UnreadableEvent

        if isinstance(exc, FixtureError):
            error(f"{exc}; nothing was imported")
            return Exit.INPUT
        if isinstance(exc, UnreadableEvent):
            error(str(exc))
            return Exit.UNREADABLE
        problem = database_error(exc, url)
        if problem is not None:
            error(problem.message)
            return problem.code
        if os.environ.get("TIMELINE_DEBUG") == "1":
            raise
        error(f"internal error: {type(exc).__name__}: {exc} (TIMELINE_DEBUG=1 shows where)")
        return Exit.INTERNAL
    return int(result) if isinstance(result, int) else Exit.OK


def _url_of(args: Sequence[str]) -> str:
    # For messages about errors raised before a command has its URL (which click parses).
    for i, arg in enumerate(args):
        if arg == "--database-url" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--database-url="):
            return arg.partition("=")[2]
    return os.environ.get("TIMELINE_DATABASE_URL") or DEFAULT_URL
