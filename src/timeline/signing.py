"""Signed checkpoints in the C2SP formats (signed-note, tlog-checkpoint, tlog-cosignature), with Ed25519.

A checkpoint is a note whose body is the log's origin, its size, its root hash (base64) and one extension
line with the time it was made; the key is named after the origin. Keys are text, as Go's note package
writes them: ``PRIVATE+KEY+<name>+<key id hex>+<base64 of 0x01 and the 32-byte seed>`` (kept secret) and
``<name>+<key id hex>+<base64 of 0x01 and the public key>`` (handed to auditors). A key file may list, after
its private key, the verifier keys of the keys it replaced (``timeline keys rotate``), one a line: checkpoints
those signed still verify.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

import nacl.bindings
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
_NAME = re.compile(r"^[^\s+]+$")
_SIGNATURE_LINE = re.compile(r"^\u2014 (\S+) ([A-Za-z0-9+/=]+)$")


class BadKey(ValueError):
    """A key's text is malformed; says how."""


def key_id(name: str, algorithm: int, public: bytes) -> bytes:
    """The 4-byte key hash a signature line carries: SHA-256(name, newline, algorithm, public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([algorithm]) + public).digest()[:4]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


class Signer:
    """An Ed25519 note signer under a name (the log's origin), with the verifier keys of the keys it
    replaced (``earlier``), which the log's older checkpoints are signed with."""

    def __init__(self, name: str, private: Ed25519PrivateKey, earlier: tuple[str, ...] = ()) -> None:
        if not _NAME.match(name):
            raise BadKey(f"a key name has no spaces or '+': {name!r}")
        self.name = name
        self.private = private
        self.public = _raw(private.public_key())
        self.id = key_id(name, ED25519, self.public)
        self.earlier = earlier
        # Every commit signs a checkpoint, so signing is on the write path: libsodium (through PyNaCl) signs
        # in about two thirds of OpenSSL's time (measured in the write path: 66 us against 122 us a
        # checkpoint on a busy machine), and Ed25519 signatures are deterministic, so both give the same
        # bytes. cryptography still parses, serializes and verifies keys.
        self._sodium_key = nacl.bindings.crypto_sign_seed_keypair(private.private_bytes_raw())[1]
        self._line = f"\u2014 {name} "

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> Signer:
        """A signer from its private key text, followed by the verifier keys of earlier keys, one a line."""
        first, *rest = text.strip().splitlines() or [""]
        earlier = tuple(line.strip() for line in rest if line.strip())
        for verifier in earlier:
            if parse_verifier(verifier)[1] != ED25519:
                raise BadKey("an earlier key is an Ed25519 verifier key (algorithm 0x01)")
        parts = first.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise BadKey("a private key reads PRIVATE+KEY+<name>+<key id>+<base64 key>")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except ValueError:
            raise BadKey("the key's last part is not base64") from None
        if len(raw) != 33 or raw[0] != ED25519:
            raise BadKey("the key is not an Ed25519 key (0x01 and 32 bytes)")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]), earlier)
        if signer.id.hex() != parts[3]:
            raise BadKey("the key id does not match the key: the text was altered")
        return signer

    def private_text(self) -> str:
        """The private key as text (keep it secret)."""
        seed = self.private.private_bytes_raw()
        encoded = base64.b64encode(bytes([ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.id.hex()}+{encoded}"

    def key_file_text(self) -> str:
        """What a key file holds: the private key, then the verifier keys of the keys it replaced."""
        return "".join(f"{line}\n" for line in (self.private_text(), *self.earlier))

    def verifier_text(self) -> str:
        """The public key as text, for auditors."""
        return f"{self.name}+{self.id.hex()}+{base64.b64encode(bytes([ED25519]) + self.public).decode()}"

    def keyring(self) -> str:
        """The verifier keys of this key and of those it replaced, one a line (as ``verify_note`` takes)."""
        return "\n".join((self.verifier_text(), *self.earlier))

    def rotated(self) -> Signer:
        """A new key under the same name that trusts this one's checkpoints (and those this one trusted)."""
        fresh = Ed25519PrivateKey.generate()
        earlier = (self.verifier_text(), *(v for v in self.earlier if v != self.verifier_text()))
        return Signer(self.name, fresh, earlier)

    def sign(self, body: str) -> str:
        """The signed note: the body, a blank line, one signature line."""
        # crypto_sign returns the signature followed by the message.
        signature = nacl.bindings.crypto_sign(body.encode(), self._sodium_key)[:64]
        return f"{body}\n{self._line}{base64.b64encode(self.id + signature).decode()}\n"


def checkpoint_body(origin: str, size: int, root: bytes, at: dt.datetime) -> str:
    """A tlog-checkpoint body: origin, size, base64 root, and the time it was made as an extension line."""
    return stamped_body(origin, size, root, stamp(at))


def stamped_body(origin: str, size: int, root: bytes, stamped: str) -> str:
    """``checkpoint_body`` with its time already formatted by ``stamp``."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntime {stamped}\n"


def stamp(at: dt.datetime) -> str:
    """A checkpoint's time as its body writes it: UTC, microseconds, a Z (isoformat takes half strftime's
    time, and every commit formats one)."""
    if at.tzinfo is not dt.UTC:
        at = at.astimezone(dt.UTC)
    return at.isoformat(timespec="microseconds")[:26] + "Z"


class Cosignature:
    """A witness's signature line over a checkpoint body (C2SP tlog-cosignature, cosignature/v1)."""

    @staticmethod
    def message(body: str, timestamp: int) -> bytes:
        """What a witness signs: a header with its time (Unix seconds) and the checkpoint body."""
        return f"cosignature/v1\ntime {timestamp}\n{body}".encode()

    @staticmethod
    def verify(line: str, body: str, verifier: str) -> int:
        """Check a cosignature line against a witness's verifier key text; returns its time, else raises
        ``BadKey`` saying why."""
        name, algorithm, public = parse_verifier(verifier)
        if algorithm != COSIGNATURE_V1:
            raise BadKey("a witness key is a cosignature/v1 key (algorithm 0x04)")
        match = _SIGNATURE_LINE.match(line.strip())
        if match is None or match.group(1) != name:
            raise BadKey(f"a cosignature line reads '\u2014 {name} <base64>'")
        raw = base64.b64decode(match.group(2))
        if len(raw) != 4 + 8 + 64 or raw[:4] != key_id(name, COSIGNATURE_V1, public):
            raise BadKey("the cosignature is not by this witness key")
        timestamp = int.from_bytes(raw[4:12], "big")
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], Cosignature.message(body, timestamp))
        except InvalidSignature:
            raise BadKey("the cosignature does not verify: not over this checkpoint") from None
        return timestamp


def parse_verifier(text: str) -> tuple[str, int, bytes]:
    """A verifier key's name, algorithm and 32-byte public key."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise BadKey("a verifier key reads <name>+<key id>+<base64 key>")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise BadKey("the key's last part is not base64") from None
    if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
        raise BadKey("the key is not Ed25519 (0x01 or 0x04 and 32 bytes)")
    if key_id(parts[0], raw[0], raw[1:]).hex() != parts[1]:
        raise BadKey("the key id does not match the key: the text was altered")
    return parts[0], raw[0], raw[1:]


def verify_note(note: str, verifier: str) -> str:
    """The body of a note whose signature by ``verifier`` checks; raises ``BadKey`` otherwise. ``verifier``
    may hold several verifier keys, one a line (a key and those it replaced): a signature by any of them
    does, found by the key hash its signature line carries."""
    keys: dict[tuple[str, bytes], bytes] = {}
    for text in verifier.strip().splitlines():
        name, algorithm, public = parse_verifier(text)
        keys[(name, key_id(name, algorithm, public))] = public
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        raise BadKey("a signed note has a blank line between its body and its signatures")
    body += "\n"
    for line in signatures.splitlines():
        match = _SIGNATURE_LINE.match(line)
        if match is None:
            continue
        name, raw = match.group(1), base64.b64decode(match.group(2))
        known = keys.get((name, raw[:4]))
        if known is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(known).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise BadKey(f"the signature by {name} does not verify: the note was altered") from None
        return body
    names = " or ".join(sorted({name for name, _ in keys}))
    raise BadKey(f"the note carries no signature by {names}")


# Where ``timeline serve`` makes its key on the first start, and where every command looks when no variable
# names a key (relative to the directory the command runs in).
DEFAULT_KEY_FILE = Path("var/timeline.key")


def configured(environ: Mapping[str, str] | None = None) -> Signer | None:
    """The signer every command uses: TIMELINE_SIGNING_KEY(_FILE) if set, else var/timeline.key if there
    is one, else None; raises ``BadKey`` when the key is unusable."""
    signer = from_env(environ)
    if signer is None and DEFAULT_KEY_FILE.is_file():
        signer = from_env({"TIMELINE_SIGNING_KEY_FILE": str(DEFAULT_KEY_FILE)})
    return signer


def configured_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The file ``configured`` reads the key from (None when it is given as text, or there is none)."""
    env = os.environ if environ is None else environ
    if env.get("TIMELINE_SIGNING_KEY"):
        return None
    if env.get("TIMELINE_SIGNING_KEY_FILE"):
        return Path(env["TIMELINE_SIGNING_KEY_FILE"])
    return DEFAULT_KEY_FILE if DEFAULT_KEY_FILE.is_file() else None


def from_env(environ: Mapping[str, str] | None = None) -> Signer | None:
    """The signer configured by TIMELINE_SIGNING_KEY (the private key text) or TIMELINE_SIGNING_KEY_FILE (a
    file holding it), or None; raises ``BadKey`` naming the variable when the key is unusable."""
    env = os.environ if environ is None else environ
    text, where = env.get("TIMELINE_SIGNING_KEY"), "TIMELINE_SIGNING_KEY"
    if not text and env.get("TIMELINE_SIGNING_KEY_FILE"):
        where = env["TIMELINE_SIGNING_KEY_FILE"]
        try:
            text = Path(where).read_text(encoding="utf-8")
        except OSError as exc:
            raise BadKey(f"{where}: cannot read the signing key: {exc.strerror}") from None
    if not text:
        return None
    try:
        return Signer.parse(text)
    except BadKey as exc:
        raise BadKey(f"{where}: {exc}") from None
