"""C2SP signed notes and checkpoints as the auditor reads them, and witness cosignatures (cosignature/v1)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519, COSIGNATURE = 0x01, 0x04


class Rejected(Exception):
    """A checkpoint, proof or log the auditor does not accept; the message says why."""


class UnknownKey(Rejected):
    """A checkpoint signed under the log's name by another key than the one trusted: rotated, or forged."""

    def __init__(self, name: str, key_hash: str, trusted_hash: str) -> None:
        self.key_hash = key_hash
        super().__init__(
            f"the checkpoint is signed as {name} by key {key_hash}, not by the key you trust "
            f"({trusted_hash}). If the log's operator rotated its key (timeline keys rotate), get the new "
            "verifier key from them (timeline keys show prints it) and run again with --log-key NEW_KEY: the "
            "checkpoints kept stay checked with the key that signed them and the new one must still extend "
            "them. Otherwise someone else signed this checkpoint: do not trust it"
        )


def _key_id(name: str, algorithm: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([algorithm]) + public).digest()[:4]


def parse_key(text: str) -> tuple[str, int, bytes]:
    """A verifier key ``name+id+base64(algorithm, key)``: its name, algorithm and public key."""
    parts = text.strip().split("+", 2)
    try:
        raw = base64.b64decode(parts[2], validate=True) if len(parts) == 3 else b""
    except ValueError:
        raw = b""
    if len(raw) != 33 or _key_id(parts[0], raw[0], raw[1:]).hex() != parts[1]:
        raise Rejected(f"not a verifier key: {text.strip()[:40]!r}")
    return parts[0], raw[0], raw[1:]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: its origin, size, root, the body that was signed and the whole note."""

    origin: str
    size: int
    root: bytes
    body: str
    note: str


def open_checkpoint(note: str, log_key: str) -> Checkpoint:
    """The checkpoint in ``note`` once its signature by ``log_key`` verifies; raises ``Rejected``."""
    name, algorithm, public = parse_key(log_key)
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        raise Rejected("not a signed note: no blank line before the signatures")
    body += "\n"
    wanted = _key_id(name, algorithm, public)
    others: list[str] = []
    for line in signatures.splitlines():
        words = line.split(" ")
        if len(words) != 3 or words[0] != "\u2014" or words[1] != name:
            continue
        raw = base64.b64decode(words[2])
        if raw[:4] != wanted:
            others.append(raw[:4].hex())
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise Rejected(f"the checkpoint's signature by {name} does not verify: it was altered") from None
        lines = body.splitlines()
        if len(lines) < 3 or lines[0] != name or not lines[1].isdigit():
            raise Rejected("the signed note is not a checkpoint of this log")
        return Checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2]), body, note)
    if others:
        raise UnknownKey(name, others[0], wanted.hex())
    raise Rejected(f"the checkpoint carries no signature by the log's key {name}")


def cosign(checkpoint: Checkpoint, witness_key: str, now: int | None = None) -> str:
    """A witness's cosignature line over a checkpoint it verified (C2SP tlog-cosignature)."""
    parts = witness_key.strip().split("+", 4)
    raw = base64.b64decode(parts[4])
    private = Ed25519PrivateKey.from_private_bytes(raw[1:])
    public = private.public_key().public_bytes_raw()
    stamp = int(time.time()) if now is None else now
    message = f"cosignature/v1\ntime {stamp}\n{checkpoint.body}".encode()
    signature = private.sign(message)
    key_hash = _key_id(parts[2], COSIGNATURE, public)
    return f"\u2014 {parts[2]} {base64.b64encode(key_hash + stamp.to_bytes(8, 'big') + signature).decode()}"


def new_witness_key(name: str) -> tuple[str, str]:
    """A new witness key: its private text (keep it secret) and its verifier key text."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    key_hash = _key_id(name, COSIGNATURE, public).hex()
    seed = base64.b64encode(bytes([COSIGNATURE]) + private.private_bytes_raw()).decode()
    return (
        f"PRIVATE+KEY+{name}+{key_hash}+{seed}",
        f"{name}+{key_hash}+{base64.b64encode(bytes([COSIGNATURE]) + public).decode()}",
    )


def witness_verifier(private_text: str) -> str:
    """The verifier key of a witness's private key text."""
    parts = private_text.strip().split("+", 4)
    raw = base64.b64decode(parts[4])
    public = Ed25519PrivateKey.from_private_bytes(raw[1:]).public_key().public_bytes_raw()
    return f"{parts[2]}+{parts[3]}+{base64.b64encode(bytes([COSIGNATURE]) + public).decode()}"
