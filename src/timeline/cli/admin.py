"""Commands around the store: draft a fixture, tokens, the schema, the OpenAPI document."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from timeline import drafting, signing
from timeline.app import queries
from timeline.cli.common import Group, disposing, run_command
from timeline.cli.serving import DEFAULT_KEY, DEFAULT_KEY_NAME, write_key
from timeline.console import CommandError, open_database, progress
from timeline.store import audit, migrate, tokens, tree
from timeline.store.database import Database
from timeline.store.tokens import SCOPES


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
    fixture = drafting.draft(raw, published=published, title=title, subject=subject,
                             known_sources=known_sources, known_claims=known_claims)  # fmt: skip
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
def tokens_create(url: str, name: str, scopes: tuple[tokens.Scope, ...]) -> None:
    """Create a token and print its secret once; NAME is recorded in every event it writes."""
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
    db = open_database(url, must_exist=True)

    async def run() -> list[tokens.Token]:
        async with db.read() as conn:
            return list(await tokens.all_tokens(conn))

    for t in run_command(url, lambda: disposing(db, run())):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
        click.echo(f"{t.name}\t{' '.join(t.scopes)}\t{state}\tcreated {t.created_at:%Y-%m-%d %H:%M}")


@click.group("keys", cls=Group)
def keys_group() -> None:
    """The Ed25519 key that signs checkpoints (kept outside the database)."""


@keys_group.command("create")
@click.option(
    "--name", default=DEFAULT_KEY_NAME, show_default=True, help="the log's origin (no spaces or '+')"
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_KEY, show_default=True
)
def keys_create(name: str, output: Path) -> None:
    """Create a signing key in a new file (readable by you alone) and print its verifier key."""
    if output.exists():
        raise CommandError(f"{output} exists: a signing key is never overwritten")
    try:
        signer = write_key(output, name)
    except signing.BadKey as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{output}: cannot write the key: {exc.strerror}") from None
    click.echo(signer.verifier_text())
    click.echo(
        f"signing key written to {output}; serve with TIMELINE_SIGNING_KEY_FILE={output} (the default "
        "when it is var/timeline.key) and give auditors the verifier key above",
        err=True,
    )


def _configured_signer() -> signing.Signer:
    try:
        signer = signing.from_env()
        if signer is None and DEFAULT_KEY.exists():
            signer = signing.from_env({"TIMELINE_SIGNING_KEY_FILE": str(DEFAULT_KEY)})
    except signing.BadKey as exc:
        raise CommandError(str(exc)) from None
    if signer is None:
        raise CommandError("no signing key configured (TIMELINE_SIGNING_KEY_FILE) and no var/timeline.key")
    return signer


@keys_group.command("show")
def keys_show() -> None:
    """Print the verifier key of the configured signing key (TIMELINE_SIGNING_KEY(_FILE), else
    var/timeline.key)."""
    click.echo(_configured_signer().verifier_text())


@keys_group.command("sign-head")
@click.option(
    "--size",
    type=click.IntRange(min=1),
    required=True,
    help="the log's size you checked (the head position `timeline verify` printed)",
)
@click.pass_obj
def keys_sign_head(url: str, size: int) -> None:
    """Sign a checkpoint over events no checkpoint covers, once you have checked them: timeline itself signs
    only what it appended, so events written without the key (or before it) stay unsigned until then."""
    signer = _configured_signer()
    db = open_database(url, must_exist=True)

    async def run() -> tree.Checkpoint:
        async with db.read() as conn:
            report = await audit.verify(conn, verifier=signer.verifier_text())
        if report.first_break is not None:
            raise CommandError(
                f"nothing signed: the log is broken at position {report.first_break.position}: "
                f"{report.first_break.problem}"
            )
        async with db.write() as conn:
            try:
                return await tree.sign_head(conn, signer, size)
            except ValueError as exc:
                raise CommandError(f"nothing signed: {exc}") from None

    checkpoint = run_command(url, lambda: disposing(db, run()))
    click.echo(f"signed the checkpoint of {checkpoint.size} events, root {checkpoint.root_hash}")


@click.group("db", cls=Group)
def db_group() -> None:
    """The database schema."""


@db_group.command()
@click.pass_obj
def upgrade(url: str) -> None:
    """Migrate the schema to the latest revision."""
    database = open_database(url, must_exist=False)

    async def run() -> str | None:
        with progress("upgrading the schema", unit="migrations", lazy=True) as advance:
            await migrate.upgrade(database, progress=advance)
        return await migrate.current_revision(database)

    click.echo(f"database at revision {run_command(url, lambda: disposing(database, run()))}")


def openapi_document() -> str:
    """The OpenAPI document of the app, as committed at openapi/openapi.json."""
    from timeline.api.app import create_app

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
