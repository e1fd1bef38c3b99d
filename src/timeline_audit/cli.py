"""``timeline-audit``: check a timeline server without trusting it.

It keeps every checkpoint it accepted in a state file, accepts a new one only when the log's key signed it
and the server proves it extends the newest one kept, and checks a claim's events (or the whole log)
against a checkpoint it accepted. Exit 0 when everything holds, 2 when something does not, 1 on misuse.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64decode, b64encode
from collections.abc import Callable
from pathlib import Path
from typing import Any

from timeline_audit import notes, proofs
from timeline_audit.notes import Checkpoint, Rejected

Transport = Callable[[urllib.request.Request], tuple[int, bytes]]


def _urlopen(request: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Unauthorized(Exception):
    """The server wants a (better) token: misuse, exit 1, not a finding about the log."""


class Auditor:
    """A server's URL, the log's verifier key, and the checkpoints kept in a state file."""

    def __init__(
        self,
        url: str,
        state: Path,
        log_key: str | None,
        token: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.transport = transport or _urlopen
        self.state_path = state
        self.token = token
        self.state: dict[str, Any] = (
            json.loads(state.read_text(encoding="utf-8")) if state.exists() else {"checkpoints": []}
        )
        key = (log_key or self.state.get("log_key") or "").strip()
        if not key:
            raise SystemExit("timeline-audit: give the log's verifier key (--log-key) the first time")
        name = notes.parse_key(key)[0]
        kept_key = self.state.get("log_key")
        # Keys the log signed with before a rotation: they still verify the checkpoints they signed.
        self.earlier: list[str] = list(self.state.get("earlier_keys", []))
        self.key_changed_from: str | None = None
        if kept_key not in (None, key):
            if notes.parse_key(kept_key)[0] != name:
                raise SystemExit("timeline-audit: this state file keeps checkpoints of another log")
            if key in self.earlier:
                raise SystemExit(f"timeline-audit: that key was replaced by {kept_key}; give that one")
            # The operator switched --log-key after a rotation: a new checkpoint is accepted only when it is
            # signed by the new key and proved to extend the checkpoints kept (it is saved only then).
            self.earlier.append(kept_key)
            self.key_changed_from = kept_key
        self.log_key = key

    def get(self, path: str, **query: object) -> bytes:
        """GET a path of the server; ``Rejected`` with the server's own words when it refuses."""
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        return self._send(urllib.request.Request(url))

    def post(self, path: str, body: dict[str, Any]) -> bytes:
        """POST JSON to a path of the server."""
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> bytes:
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        status, body = self.transport(request)
        if status >= 400:
            detail = body.decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("detail", detail)
            if status in (401, 403):  # the auditor's own credentials, not the log, are at fault
                raise Unauthorized(f"{request.full_url} answered {status}: {detail} (give one with --token)")
            raise Rejected(f"{request.full_url} answered {status}: {detail}")
        return body

    def open_signed(self, note: str) -> Checkpoint:
        """A checkpoint signed by the log's key or by one it signed with before a rotation."""
        try:
            return notes.open_checkpoint(note, self.log_key)
        except Rejected as exc:
            for key in reversed(self.earlier):
                with contextlib.suppress(Rejected):
                    return notes.open_checkpoint(note, key)
            raise exc from None

    def _opens(self, note: str) -> bool:
        try:
            self.open_signed(note)
        except Rejected:
            return False
        return True

    @property
    def kept(self) -> Checkpoint | None:
        """The newest checkpoint kept, re-verified (the state file is not trusted either)."""
        if not self.state["checkpoints"]:
            return None
        return self.open_signed(self.state["checkpoints"][-1])

    def save(self) -> None:
        self.state["log_key"] = self.log_key
        if self.earlier:
            self.state["earlier_keys"] = self.earlier
        self.state_path.write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")

    def checkpoint(self) -> tuple[Checkpoint, str]:
        """Fetch the latest checkpoint, check its signature and that it extends the one kept; keep it."""
        old = self.kept
        note = self.get("/audit/checkpoint").decode()
        try:
            new = notes.open_checkpoint(note, self.log_key)
        except Rejected:
            # Switch only to a key that signed a checkpoint the server serves, never on its word alone.
            if self.key_changed_from and self._opens(note):
                raise Rejected(
                    f"the server's latest checkpoint is still signed by the key you trusted before "
                    f"({self.key_changed_from}), not by {self.log_key}: nothing switched; run again "
                    "once the log has signed with the new key"
                ) from None
            raise
        if old is None:
            said = "no checkpoint kept before: this one is trusted from now on"
        elif new.size < old.size:
            raise Rejected(
                f"the server's latest checkpoint has {new.size} events, fewer than the {old.size} of one you "
                f"kept: the log was cut back (events {new.size + 1}-{old.size} are gone)"
            )
        elif new.size == old.size:
            if new.root != old.root:
                raise Rejected(f"two checkpoints of {new.size} events with different roots: the log forked")
            said = f"the same size as the checkpoint kept ({old.size} events), the same root"
        else:
            answer = json.loads(self.get("/audit/proofs/consistency", **{"from": old.size, "to": new.size}))
            path = [b64decode(h) for h in answer["hashes"]]
            if not proofs.consistency_ok(old.size, new.size, old.root, new.root, path):
                raise Rejected(
                    f"the checkpoint of {new.size} events does not extend the one of {old.size} you kept: "
                    "the log was rewritten"
                )
            said = f"consistent with the checkpoint of {old.size} events kept before (RFC 9162 proof checked)"
        if self.key_changed_from:
            said += f"; the log's key is now {self.log_key} (was {self.key_changed_from})"
        if old is None or new.size > old.size:
            self.state["checkpoints"].append(new.note.split("\n\n")[0] + "\n\n" + _log_line(new.note))
        self.save()
        return new, said

    def claim(self, claim_id: str, checkpoint: Checkpoint) -> list[str]:
        """Check every event of a claim's history: its hash from its stored fields, and its inclusion in the
        accepted checkpoint."""
        quoted = urllib.parse.quote(claim_id, safe="")
        history = json.loads(self.get(f"/claims/{quoted}/history", proof="true"))
        said: list[str] = []
        versions = [e["stream_version"] for e in history["events"]]
        if versions != list(range(1, len(versions) + 1)):
            raise Rejected(f"the claim's history skips versions: {versions}")
        for entry in history["events"]:
            position, proof = entry["position"], entry.get("proof")
            if proof is None:
                raise Rejected(f"event {position} has no inclusion proof: no signed checkpoint covers it")
            stored, inclusion = proof["stored"], proof["inclusion"]
            if stored["position"] != position or stored["hash"] != entry["hash"]:
                raise Rejected(f"event {position}: the stored form differs from the event shown")
            if proofs.chain_hash(stored) != stored["hash"]:
                raise Rejected(f"event {position}: its contents do not match its hash: it was altered")
            size = inclusion["size"]
            if size == checkpoint.size:
                root = checkpoint.root
            else:  # proved against another checkpoint: accept it only through this one's signature
                other = self.open_signed(self.get("/audit/checkpoint", size=size).decode())
                root = other.root
                if size > checkpoint.size:
                    raise Rejected(
                        f"event {position} is proved against a checkpoint newer than the accepted one"
                    )
                answer = json.loads(
                    self.get("/audit/proofs/consistency", **{"from": size, "to": checkpoint.size})
                )
                if not proofs.consistency_ok(
                    size, checkpoint.size, root, checkpoint.root, [b64decode(h) for h in answer["hashes"]]
                ):
                    raise Rejected(f"the checkpoint of {size} events is not consistent with the accepted one")
            path = [b64decode(h) for h in inclusion["hashes"]]
            if not proofs.inclusion_ok(proofs.leaf(stored["hash"]), position - 1, size, path, root):
                raise Rejected(
                    f"event {position} is not in the log the checkpoint of {size} events signed: it was "
                    "altered, moved or inserted"
                )
            said.append(
                f"event {position} ({stored['type']}, version {stored['stream_version']}): "
                "hash and inclusion proof hold"
            )
        return said

    def log(self, checkpoint: Checkpoint) -> str:
        """Download the whole log and recompute everything: the chain, and the tree's root at every kept
        checkpoint and at the accepted one. Names the first position that does not hold."""
        kept = {c.size: c for c in (self.open_signed(n) for n in self.state["checkpoints"])}
        kept[checkpoint.size] = checkpoint
        tree, prev = proofs.Tree(), "0" * 64
        for number, line in enumerate(self.get("/audit/export").splitlines(), start=1):
            e = json.loads(line)
            if e["position"] != number:
                raise Rejected(f"event {number} is missing (the next stored event is {e['position']})")
            if e["prev_hash"] != prev:
                raise Rejected(
                    f"event {number}: its prev_hash is not event {number - 1}'s hash: events were removed, "
                    "reordered or rewritten"
                )
            if proofs.chain_hash(e) != e["hash"]:
                raise Rejected(f"event {number}: its contents do not match its hash: it was altered")
            tree.add(proofs.leaf(e["hash"]))
            prev = e["hash"]
            at = kept.get(tree.size)
            if at is not None and tree.root() != at.root:
                raise Rejected(
                    f"the first {at.size} events no longer have the root of the signed checkpoint of "
                    f"{at.size} events: the log was rewritten at or before that position"
                )
        if tree.size < checkpoint.size:
            raise Rejected(
                f"the log ends at event {tree.size} but the checkpoint signed {checkpoint.size} events: "
                f"events {tree.size + 1}-{checkpoint.size} were deleted"
            )
        if tree.size > checkpoint.size:
            raise Rejected(
                f"events {checkpoint.size + 1}-{tree.size} are not covered by the signed checkpoint: they "
                "were appended without the log's key (unsigned)"
            )
        return f"the whole log ({tree.size} events): chain and tree roots at {len(kept)} checkpoint(s) hold"

    def cosign(self, checkpoint: Checkpoint, witness_key: str) -> str:
        """Cosign a checkpoint this auditor accepted and send it to the server."""
        line = notes.cosign(checkpoint, witness_key)
        body = {
            "size": checkpoint.size,
            "verifier_key": notes.witness_verifier(witness_key),
            "signature": line,
        }
        self.post("/audit/cosignatures", body)
        return line


def _log_line(note: str) -> str:
    # Only the log's own signature is kept: cosignatures are the witnesses' business.
    return note.split("\n\n", 1)[1].splitlines()[0] + "\n"


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="timeline-audit", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=Path("timeline-audit.json"), help="checkpoints kept")
    parser.add_argument("--log-key", help="the log's verifier key (needed once; then kept in the state)")
    parser.add_argument("--token", help="a bearer token, if the server requires one")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("checkpoint", "accept the latest checkpoint if it is signed and extends the one kept"),
        ("log", "also recompute the whole log against every checkpoint kept"),
    ):
        sub.add_parser(name, help=helptext).add_argument("url")
    claim = sub.add_parser("claim", help="prove each event of a claim's history against the checkpoint")
    claim.add_argument("url")
    claim.add_argument("claim_id")
    cosign = sub.add_parser("cosign", help="as checkpoint, then cosign it as a witness and send it")
    cosign.add_argument("url")
    cosign.add_argument(
        "--witness-key", type=Path, required=True, help="a file with the witness's private key"
    )
    keys = sub.add_parser(
        "witness-key", help="create a witness key: private key to a file, verifier key printed"
    )
    keys.add_argument("name")
    keys.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "witness-key":
        private, verifier = notes.new_witness_key(args.name)
        args.output.write_text(private + "\n", encoding="utf-8")
        args.output.chmod(0o600)
        print(f"witness key written to {args.output}; its verifier key: {verifier}")
        return 0
    try:
        auditor = Auditor(args.url, args.state, args.log_key, args.token)
        checkpoint, said = auditor.checkpoint()
        print(f"checkpoint {checkpoint.origin} {checkpoint.size} {b64encode(checkpoint.root).decode()}")
        print(f"  signature by the log's key: verified; {said}")
        if args.command == "claim":
            for line in auditor.claim(args.claim_id, checkpoint):
                print(f"  {line}")
        elif args.command == "log":
            print(f"  {auditor.log(checkpoint)}")
        elif args.command == "cosign":
            auditor.cosign(checkpoint, args.witness_key.read_text(encoding="utf-8"))
            print(f"  cosigned as {args.witness_key.read_text(encoding='utf-8').split('+')[2]} and sent")
    except Rejected as exc:
        print(f"timeline-audit: REJECTED: {exc}", file=sys.stderr)
        return 2
    except (OSError, urllib.error.URLError, Unauthorized) as exc:
        print(f"timeline-audit: {exc}", file=sys.stderr)
        return 1
    print("ok")
    return 0
