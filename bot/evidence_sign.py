"""Signing and checking an evidence pack (``drbot evidence``, ``drbot evidence verify DIR``).

``manifest.json`` lists the SHA-256 of every other file of the pack and names the key
that signs it; ``manifest.sig`` holds the signature of the exact bytes of
``manifest.json``. Changing any byte of any file breaks a hash or the signature.

The key comes from the environment, ``DRBOT_EVIDENCE_KEY``, never from the config file:

- an Ed25519 private key in PEM (``-----BEGIN PRIVATE KEY-----``, e.g. from
  ``openssl genpkey -algorithm ed25519``) signs; its public key in PEM
  (``-----BEGIN PUBLIC KEY-----``) is enough to verify, so an auditor needs no secret;
- anything else is an HMAC-SHA256 secret of at least 32 bytes, used to sign and verify.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ENV = "DRBOT_EVIDENCE_KEY"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
ED25519, HMAC_SHA256 = "ed25519", "hmac-sha256"
MIN_SECRET = 32
HOW = (f"set {ENV} to an Ed25519 private key in PEM (openssl genpkey -algorithm ed25519) or to an "
       f"HMAC-SHA256 secret of at least {MIN_SECRET} bytes (e.g. openssl rand -hex 32)")


class BadKey(ValueError):
    """The key in the environment cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Key:
    algorithm: str
    key_id: str
    """A fingerprint that names the key (never the key): which key signed a pack."""
    _secret: bytes = b""
    _private: Ed25519PrivateKey | None = None
    _public: Ed25519PublicKey | None = None

    @property
    def can_sign(self) -> bool:
        return self.algorithm == HMAC_SHA256 or self._private is not None

    def sign(self, data: bytes) -> bytes:
        if self.algorithm == HMAC_SHA256:
            return hmac.new(self._secret, data, hashlib.sha256).digest()
        if self._private is None:
            raise BadKey(f"{ENV} holds an Ed25519 public key: it verifies packs but cannot sign them; "
                         "set it to the private key to export")
        return self._private.sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        if self.algorithm == HMAC_SHA256:
            return hmac.compare_digest(self.sign(data), signature)
        try:
            self._public.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _ed25519_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def parse_key(text: str) -> Key:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        data = text.encode()
        try:
            if "PRIVATE KEY" in text.splitlines()[0]:
                private = serialization.load_pem_private_key(data, password=None)
                if not isinstance(private, Ed25519PrivateKey):
                    raise BadKey(f"{ENV} is a PEM private key, but not Ed25519: {HOW}")
                return Key(ED25519, _ed25519_id(private.public_key()), _private=private, _public=private.public_key())
            public = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise BadKey(f"{ENV} looks like PEM but cannot be read ({e}): {HOW}") from None
        if not isinstance(public, Ed25519PublicKey):
            raise BadKey(f"{ENV} is a PEM public key, but not Ed25519: {HOW}")
        return Key(ED25519, _ed25519_id(public), _public=public)
    secret = text.encode()
    if len(secret) < MIN_SECRET:
        raise BadKey(f"{ENV} is {len(secret)} bytes: an HMAC secret needs at least {MIN_SECRET}; {HOW}")
    key_id = "hmac:" + hashlib.sha256(b"drbot evidence key id\n" + secret).hexdigest()[:16]
    return Key(HMAC_SHA256, key_id, _secret=secret)


def key_from_env(environ: Mapping[str, str]) -> Key | None:
    """The key in ``DRBOT_EVIDENCE_KEY``; None when it is not set."""
    text = environ.get(ENV, "")
    return parse_key(text) if text.strip() else None


def signature_text(key: Key, manifest: bytes) -> str:
    body = {"algorithm": key.algorithm, "key_id": key.key_id, "signed_file": MANIFEST,
            "signature": base64.b64encode(key.sign(manifest)).decode()}
    return json.dumps(body, sort_keys=True, indent=2) + "\n"


def _manifest(directory: Path) -> tuple[bytes, dict[str, Any]] | str:
    try:
        data = (directory / MANIFEST).read_bytes()
    except OSError:
        return f"{MANIFEST} is missing: {directory} is not an evidence pack, or it lost its manifest"
    try:
        manifest = json.loads(data)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is not a manifest of drbot evidence (changed, or not written by drbot)"
    return data, manifest


def _signature(directory: Path, data: bytes, manifest: dict[str, Any], key: Key) -> list[str]:
    try:
        sig = json.loads((directory / SIGNATURE).read_bytes())
        signature = base64.b64decode(sig["signature"], validate=True)
        algorithm, key_id = sig["algorithm"], sig["key_id"]
    except OSError:
        return [f"{SIGNATURE} is missing: the pack is not signed"]
    except (ValueError, KeyError, TypeError):
        return [f"{SIGNATURE} cannot be read (changed, or not written by drbot)"]
    signing = manifest.get("signing") or {}
    if (signing.get("algorithm"), signing.get("key_id")) != (algorithm, key_id):
        return [f"{SIGNATURE} names key {key_id} ({algorithm}) but {MANIFEST} names "
                f"{signing.get('key_id')} ({signing.get('algorithm')}): one of them was changed"]
    if (algorithm, key_id) != (key.algorithm, key.key_id):
        return [f"the pack is signed with key {key_id} ({algorithm}), but {ENV} is key {key.key_id} "
                f"({key.algorithm}): verify with the key that signed it"]
    if not key.verify(data, signature):
        return [f"the signature in {SIGNATURE} does not match {MANIFEST}: one of them was changed after export"]
    return []


def _hashes(directory: Path, files: dict[str, Any]) -> list[str]:
    problems = []
    for name, digest in sorted(files.items()):
        if not isinstance(name, str) or Path(name).name != name or name in (MANIFEST, SIGNATURE, "", ".", ".."):
            problems.append(f"{MANIFEST} lists {name!r}, which is not a file of the pack")
            continue
        try:
            actual = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        except OSError:
            problems.append(f"{name} is listed in {MANIFEST} but missing")
            continue
        if actual != digest:
            problems.append(f"{name} was changed after export: its SHA-256 is {actual}, the manifest says {digest}")
    present = {p.name for p in directory.iterdir()} - {MANIFEST, SIGNATURE}
    problems += [f"{name} is not in {MANIFEST}: it was added after export" for name in sorted(present - set(files))]
    return problems


def verify_pack(directory: str | Path, key: Key) -> tuple[list[str], int]:
    """(problems, number of files checked). No problems: every byte is as exported."""
    directory = Path(directory)
    if not directory.is_dir():
        return [f"{directory} is not a directory"], 0
    read = _manifest(directory)
    if isinstance(read, str):
        return [read], 0
    data, manifest = read
    return _signature(directory, data, manifest, key) + _hashes(directory, manifest["files"]), len(manifest["files"])
