"""Commands around the store: draft a fixture, tokens, the schema, the OpenAPI document."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from timeline.cli.common import Group, disposing, run_command
from timeline.console import CommandError, open_database, progress
from timeline.store import SCOPES, Scope

# Each command imports the library it needs when it runs: `timeline --help` loads none of it.


@click.command()
@click.argument("article", type=click.Path(path_type=Path))
@click.option("--date", help="the article's date, YYYY-MM-DD (default: a 'date YYYY-MM-DD' in the text)")
@click.option("--subject", help="the subject's id, if it is registered already")
@click.option("--title", help="the article's title (default: its first line)")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the draft here instead of standard output",
)
@click.pass_obj
def draft(
    url: str, article: Path, date: str | None, subject: str | None, title: str | None, output: Path | None
) -> None:
    """Propose a fixture from an article (text or HTML), for review."""
    from timeline import drafting
    from timeline.app import queries

    raw = _article_text(article)
    try:
        published, raw = drafting.article_date(raw, date)
    except ValueError:
        raise CommandError(f"--date expects a calendar date YYYY-MM-DD, got {date!r}") from None
    if published is None:
        raise CommandError(f"{article}: no date found; give --date YYYY-MM-DD")
    db = open_database(url, must_exist=True)

    context = run_command(url, lambda: disposing(db, queries.read(db, queries.drafting_context)))
    known_sources, known_claims = context
    with progress("drafting", unit="characters") as advance:
        fixture = drafting.draft(raw, published=published, title=title, subject=subject,
                                 known_sources=known_sources, known_claims=known_claims,
                                 progress=advance)  # fmt: skip
    for note in fixture.notes:  # also in the draft's header; said here so an empty draft is not a surprise
        click.echo(f"{article}: {note}", err=True)
    document = drafting.to_yaml(fixture)
    if output:
        try:
            output.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{output}: cannot write file: {exc.strerror}") from None
    else:
        click.echo(document, nl=False)


def _article_text(article: Path) -> str:
    try:
        data = article.read_bytes()
    except OSError as exc:
        raise CommandError(f"{article}: cannot read file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{article}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the article as UTF-8"
        ) from None
    if not text.strip():
        raise CommandError(f"{article}: the file is empty; expected the article's text")
    return text


@click.group("tokens", cls=Group)
def tokens_group() -> None:
    """Bearer tokens for the write API."""


@tokens_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="write: record claims; admin: also imports, rebuilds; read: only reads (repeatable)",
)
@click.pass_obj
def tokens_create(url: str, name: str, scopes: tuple[Scope, ...]) -> None:
    """Create a token and print its secret once; NAME is recorded in every event it writes."""
    from timeline.store import migrate, tokens

    db = open_database(url, must_exist=False)

    async def run() -> str:
        await migrate.upgrade(db)
        async with db.write() as conn:
            try:
                return await tokens.create(conn, name, scopes)
            except tokens.TokenExists as exc:
                raise CommandError(str(exc)) from None

    secret = run_command(url, lambda: disposing(db, run()))
    click.echo(secret)
    click.echo(
        f"token {name!r} created with scopes {', '.join(scopes)}; the secret above is shown only once",
        err=True,
    )


@tokens_group.command("revoke")
@click.argument("name")
@click.pass_obj
def tokens_revoke(url: str, name: str) -> None:
    """Revoke a token by name."""
    from timeline.store import migrate, tokens

    db = open_database(url, must_exist=True)

    async def run() -> bool:
        await migrate.upgrade(db)
        async with db.write() as conn:
            return await tokens.revoke(conn, name)

    if not run_command(url, lambda: disposing(db, run())):
        raise CommandError(f"no live token named {name!r}")
    click.echo(f"token {name!r} revoked")


@tokens_group.command("list")
@click.pass_obj
def tokens_list(url: str) -> None:
    """List tokens (never their secrets)."""
    from timeline.store import tokens

    db = open_database(url, must_exist=True)

    async def run() -> list[tokens.Token]:
        async with db.read() as conn:
            return list(await tokens.all_tokens(conn))

    for t in run_command(url, lambda: disposing(db, run())):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
        click.echo(f"{t.name}\t{' '.join(t.scopes)}\t{state}\tcreated {t.created_at:%Y-%m-%d %H:%M}")


@click.group("db", cls=Group)
def db_group() -> None:
    """The database schema."""


@db_group.command()
@click.pass_obj
def upgrade(url: str) -> None:
    """Migrate the schema to the latest revision."""
    from timeline.store import migrate

    database = open_database(url, must_exist=False)

    async def run() -> str | None:
        with progress("upgrading the schema", unit="migrations", lazy=True) as advance:
            await migrate.upgrade(database, progress=advance)
        return await migrate.current_revision(database)

    click.echo(f"database at revision {run_command(url, lambda: disposing(database, run()))}")


def openapi_document() -> str:
    """The OpenAPI document of the app, as committed at openapi/openapi.json."""
    from timeline.api.app import create_app
    from timeline.store.database import Database

    app = create_app(Database("sqlite+aiosqlite:///:memory:"))
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"


@click.command()
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="write it to this file instead"
)
def openapi(output: Path | None) -> None:
    """Print the OpenAPI document."""
    document = openapi_document()
    if output:
        try:
            output.write_text(document)
        except OSError as exc:
            raise CommandError(f"{output}: cannot write file: {exc.strerror}") from None
    else:
        sys.stdout.write(document)
