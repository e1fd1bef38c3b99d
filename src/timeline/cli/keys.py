"""The signing key's commands: create, show, rotate, trust an earlier key, sign the head; and writing keys."""

from __future__ import annotations

import os
from pathlib import Path

import click

from timeline import signing
from timeline.cli.common import Group, disposing, run_command
from timeline.console import CommandError, open_database, progress

DEFAULT_KEY_NAME = "timeline.local/log"


def write_key(path: Path, signer: signing.Signer, *, replace: bool = False) -> None:
    """Write ``signer`` (and the earlier keys it trusts) to a file readable by its owner alone; never over an
    existing file unless ``replace``, and then all at once (a crash leaves the old key or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.new") if replace else path
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if replace:
        target.unlink(missing_ok=True)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(signer.key_file_text())
        out.flush()
        os.fsync(out.fileno())
    if replace:
        os.replace(target, path)


def configured_signer() -> signing.Signer:
    """The key every command finds (TIMELINE_SIGNING_KEY(_FILE), else var/timeline.key), else an error."""
    try:
        signer = signing.configured()
    except signing.BadKey as exc:
        raise CommandError(f"the signing key cannot be used: {exc}") from None
    if signer is None:
        raise CommandError(
            f"no signing key configured (TIMELINE_SIGNING_KEY_FILE) and no {signing.DEFAULT_KEY_FILE}"
        )
    return signer


def _key_file() -> Path:
    # A command that rewrites the key needs it in a file (not given as text in the environment).
    path = signing.configured_file()
    if path is None:
        raise CommandError(
            "the signing key is given as text (TIMELINE_SIGNING_KEY): rotate or extend it in a file, "
            "named by TIMELINE_SIGNING_KEY_FILE"
            if os.environ.get("TIMELINE_SIGNING_KEY")
            else f"no signing key configured (TIMELINE_SIGNING_KEY_FILE) and no {signing.DEFAULT_KEY_FILE}"
        )
    return path


def _rewrite(path: Path, signer: signing.Signer) -> None:
    try:
        write_key(path, signer, replace=True)
    except OSError as exc:
        raise CommandError(f"{path}: cannot write the key: {exc.strerror}") from None


@click.group("keys", cls=Group)
def keys_group() -> None:
    """The Ed25519 key that signs checkpoints (kept outside the database)."""


@keys_group.command("create")
@click.option(
    "--name", default=DEFAULT_KEY_NAME, show_default=True, help="the log's origin (no spaces or '+')"
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=signing.DEFAULT_KEY_FILE,
    show_default=True,
)
def keys_create(name: str, output: Path) -> None:
    """Create a signing key in a new file (readable by you alone) and print its verifier key."""
    if output.exists():
        raise CommandError(f"{output} exists: a signing key is never overwritten (timeline keys rotate)")
    try:
        signer = signing.Signer.generate(name)
        write_key(output, signer)
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


@keys_group.command("show")
def keys_show() -> None:
    """Print the verifier key of the configured signing key (TIMELINE_SIGNING_KEY(_FILE), else
    var/timeline.key), and on standard error those of the earlier keys it trusts."""
    signer = configured_signer()
    click.echo(signer.verifier_text())
    for earlier in signer.earlier:
        click.echo(f"earlier key, trusted for older checkpoints: {earlier}", err=True)


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Replace the signing key with a new one under the same name; the old key's verifier key stays in the
    file, so the checkpoints it signed still verify and the log signs on with the new key."""
    path = _key_file()
    old = configured_signer()
    new = old.rotated()
    _rewrite(path, new)
    click.echo(new.verifier_text())
    click.echo(
        f"new signing key written to {path} (the old private key is gone; its verifier key is kept there as "
        f"trusted for the checkpoints it signed: {old.verifier_text()}); restart the server so it signs with "
        "the new key, and give auditors the new verifier key above",
        err=True,
    )


@keys_group.command("trust")
@click.argument("verifier")
def keys_trust(verifier: str) -> None:
    """Trust an earlier key's VERIFIER key for the checkpoints it signed (after replacing a key by hand)."""
    try:
        name, algorithm, _ = signing.parse_verifier(verifier)
    except signing.BadKey as exc:
        raise CommandError(f"not a verifier key: {exc}") from None
    if algorithm != signing.ED25519:
        raise CommandError("not a log's verifier key: a witness's cosignature key (algorithm 0x04)")
    path = _key_file()
    signer = configured_signer()
    if name != signer.name:
        raise CommandError(f"the key is named {name!r}, the log {signer.name!r}: not one of this log's keys")
    verifier = verifier.strip()
    if verifier in signer.keyring().splitlines():
        click.echo(f"{path} trusts that key already")
        return
    _rewrite(path, signing.Signer(signer.name, signer.private, (*signer.earlier, verifier)))
    click.echo(f"{path} now trusts {verifier} for the checkpoints it signed")


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
    from timeline.store import audit, tree

    signer = configured_signer()
    db = open_database(url, must_exist=True)

    async def run() -> tree.Checkpoint:
        async with db.read() as conn:
            with progress("verifying before signing") as advance:
                report = await audit.verify(conn, verifier=signer.keyring(), progress=advance)
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
