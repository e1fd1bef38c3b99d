"""Audit routes: the hash chain's head, verifying it, the raw export; signed checkpoints, Merkle proofs and
witnesses' cosignatures."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Annotated, Any

from litestar import Response, get, post
from litestar.exceptions import InternalServerException
from litestar.params import JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_201_CREATED

from timeline.api.audit_schemas import ConsistencyOut, CosignatureIn, CosignatureOut, HeadOut, InclusionOut
from timeline.api.auth import requires
from timeline.api.common import Db, problems
from timeline.api.problems import BadRequest
from timeline.app.errors import NotFound
from timeline.domain.values import POSITION_MAX
from timeline.signing import BadKey, Cosignature
from timeline.store import audit, backup, eventlog, tree
from timeline.store.audit import Verification
from timeline.store.database import Database

READ = [requires("read")]


@get(
    "/audit/head", operation_id="getAuditHead", tags=["audit"], middleware=READ, responses=problems(401, 403)
)
async def head(db: Db) -> HeadOut:
    """The last event's position and hash. Note them; later, verify with them that the log only grew."""
    async with db.read() as conn:
        position, digest = await eventlog.head_link(conn)
    return HeadOut(position=position, hash=digest)


@get(
    "/audit/verify",
    operation_id="verifyLog",
    tags=["audit"],
    middleware=READ,
    responses=problems(400, 401, 403),
)
async def verify(
    db: Db,
    since_position: Annotated[
        int | None, QueryParameter(ge=0, le=POSITION_MAX, description="A head noted earlier: its position")
    ] = None,
    since_hash: Annotated[
        str | None,
        QueryParameter(pattern=r"^[0-9a-f]{64}$", description="A head noted earlier: its hash"),
    ] = None,
) -> Verification:
    """Recompute the whole hash chain from the stored rows and every signed checkpoint's root (and its
    signature, with the server's key): ``ok`` with what was checked and how many events no checkpoint covers,
    or the first position where it breaks and how. A remembered head must still be there, with its hash."""
    if (since_position is None) != (since_hash is None):
        raise BadRequest(
            "since_hash", "give both since_position and since_hash (from /audit/head), or neither"
        )
    since = (since_position, since_hash) if since_position is not None and since_hash else None
    verifier = None if db.signer is None else db.signer.keyring()
    async with db.read() as conn:
        return await audit.verify(conn, since=since, verifier=verifier)


@get(
    "/audit/export",
    operation_id="exportLog",
    tags=["audit"],
    middleware=READ,
    responses=problems(400, 401, 403),
    media_type="application/x-ndjson",
)
async def export(
    db: Db,
    subject: Annotated[
        str | None, QueryParameter(description="Only this subject's streams (not restorable on its own)")
    ] = None,
) -> Stream:
    """The log as JSON Lines, exactly as stored and hashed (the format of `timeline export`), streamed.
    Check it with the recipe in docs/audit.md, or load it with `timeline restore`."""
    lines = _export(db, subject)
    # The first batch is read before the answer starts, so what fails there gets its own status.
    try:
        first = await anext(lines, b"")
    except BaseException:
        await lines.aclose()  # gives its connection back now
        raise
    return Stream(_then(first, lines), media_type="application/x-ndjson")


async def _then(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for line in rest:
        yield line


async def _export(db: Database, subject: str | None) -> AsyncGenerator[bytes]:
    async with db.read() as conn:
        async for line in backup.export(conn, subject_id=subject):
            yield line


def _note_with_cosignatures(checkpoint: tree.Checkpoint, cosigned: list[tree.Cosigned]) -> str:
    # C2SP: a witness's cosignature is one more signature line on the checkpoint's note.
    return checkpoint.note + "".join(f"{c.signature}\n" for c in cosigned)


@get(
    "/audit/checkpoint",
    operation_id="getCheckpoint",
    tags=["audit"],
    middleware=READ,
    responses=problems(400, 401, 403, 404),
    media_type="text/plain",  # Litestar adds "; charset=utf-8" to every text/* type
)
async def checkpoint(
    db: Db,
    size: Annotated[
        int | None,
        QueryParameter(
            ge=1, le=POSITION_MAX, description="An earlier checkpoint's size (default: the latest)"
        ),
    ] = None,
) -> str:
    """The latest signed checkpoint (or the one of ``size`` events), a C2SP signed note: origin, log size,
    base64 RFC 9162 root hash, time; then the log's signature and any witnesses' cosignatures."""
    async with db.read() as conn:
        found = await (tree.latest_checkpoint(conn) if size is None else tree.checkpoint_at(conn, size))
        if found is None:
            raise NotFound("signed checkpoint", "latest" if size is None else str(size))
        cosigned = await tree.cosignatures_of(conn, found.size)
    return _note_with_cosignatures(found, cosigned)


async def _proved(proof: Coroutine[Any, Any, list[bytes]]) -> list[bytes]:
    try:
        return await proof
    except LookupError as exc:  # events the tree needs are gone: say which, rather than a bare 500
        raise InternalServerException(detail=f"cannot prove: {exc}") from None


@get(
    "/audit/proofs/inclusion",
    operation_id="getInclusionProof",
    tags=["audit"],
    middleware=READ,
    responses=problems(400, 401, 403),
)
async def inclusion_proof(
    db: Db,
    position: Annotated[
        int, QueryParameter(ge=1, le=POSITION_MAX, description="The event's position (leaf position - 1)")
    ],
    size: Annotated[
        int, QueryParameter(ge=1, le=POSITION_MAX, description="The tree size: a signed checkpoint's size")
    ],
) -> InclusionOut:
    """The RFC 9162 inclusion proof of event ``position`` in the tree of the first ``size`` events."""
    if position > size:
        raise BadRequest("position", f"position {position} is beyond the tree of {size} events")
    async with db.read() as conn:
        latest = await tree.latest_checkpoint(conn)
        if latest is None or size > latest.size:
            signed = 0 if latest is None else latest.size
            raise BadRequest("size", f"size {size} is beyond the latest signed checkpoint ({signed} events)")
        hashes = await _proved(tree.inclusion(conn, position - 1, size))
    return InclusionOut(position=position, leaf_index=position - 1, size=size, hashes=tree.b64(hashes))


@get(
    "/audit/proofs/consistency",
    operation_id="getConsistencyProof",
    tags=["audit"],
    middleware=READ,
    responses=problems(400, 401, 403),
)
async def consistency_proof(
    db: Db,
    first: Annotated[str, QueryParameter(name="from", description="The older tree size")],
    second: Annotated[str, QueryParameter(name="to", description="The newer tree size")],
) -> ConsistencyOut:
    """The RFC 9162 consistency proof that the tree of ``to`` events extends the tree of ``from``."""
    # Taken as text: `from` is no Python name, and a validation error would name the parameter otherwise.
    old, new = _size("from", first), _size("to", second)
    if old > new:
        raise BadRequest("from", f"from ({old}) is after to ({new}): a log only grows")
    async with db.read() as conn:
        latest = await tree.latest_checkpoint(conn)
        if latest is None or new > latest.size:
            signed = 0 if latest is None else latest.size
            raise BadRequest("to", f"to ({new}) is beyond the latest signed checkpoint ({signed} events)")
        hashes = await _proved(tree.consistency(conn, old, new))
    return ConsistencyOut(from_size=old, to_size=new, hashes=tree.b64(hashes))


def _size(parameter: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= POSITION_MAX:
        raise BadRequest(
            parameter, f"{parameter} must be a tree size, a whole number from 1 on; got {text!r}"
        )
    return int(text)


@post(
    "/audit/cosignatures",
    operation_id="addCosignature",
    tags=["audit"],
    status_code=HTTP_201_CREATED,
    middleware=[requires("write")],
    responses=problems(400, 401, 403, 404),
)
async def add_cosignature(db: Db, data: JSONBody[CosignatureIn]) -> Response[CosignatureOut]:
    """Keep a witness's cosignature of a signed checkpoint, once it verifies with the witness key sent."""
    async with db.serial() as conn:
        found = await tree.checkpoint_at(conn, data.size)
        if found is None:
            raise NotFound("signed checkpoint", str(data.size))
        body = found.note.partition("\n\n")[0] + "\n"
        try:
            stamp = Cosignature.verify(data.signature, body, data.verifier_key)
        except (BadKey, ValueError) as exc:
            raise BadRequest("signature", str(exc)) from None
        witness = data.verifier_key.split("+")[0]
        signed_at = dt.datetime.fromtimestamp(stamp, dt.UTC)
        await tree.add_cosignature(
            conn,
            tree.Cosigned(
                size=data.size,
                witness=witness,
                verifier_key=data.verifier_key,
                signature=data.signature.strip(),
                signed_at=signed_at,
            ),
        )
    return Response(CosignatureOut(size=data.size, witness=witness, signed_at=signed_at))


ROUTES = [head, verify, export, checkpoint, inclusion_proof, consistency_proof, add_cosignature]
