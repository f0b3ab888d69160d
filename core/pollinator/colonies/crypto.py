"""Colonies identities: secp256k1 keys, recoverable signatures, ids.

The scheme is pycolonies' ``crypto.Crypto`` (the reference): a signature is
``r||s||v`` hex over sha3-256 of the base64 payload string; an id is the
sha3-256 hex of the ASCII string ``"04" + uncompressed-public-key-hex``.
We use coincurve (libsecp256k1) instead of pycolonies' pure-Python curve maths
because it is ~30x faster and pycolonies installs a top-level ``crypto``
module that any ``crypto.py`` on ``sys.path`` would shadow. A test pins
byte-identical output against pycolonies.
"""

from __future__ import annotations

import functools
import hashlib
import os

import coincurve

from pollinator.errors import ConfigError

_HEX = set("0123456789abcdefABCDEF")


def _sha3(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def generate_private_key() -> str:
    """A fresh private key, as pycolonies makes them (sha3 of 32 random bytes)."""
    return hashlib.sha3_256(os.urandom(32)).hexdigest()


@functools.lru_cache(maxsize=16)
def _private_key(prvkey: str) -> coincurve.PrivateKey:
    """Parsed once per key (a sync signs one request per file with the same key)."""
    if len(prvkey) != 64 or not set(prvkey) <= _HEX:
        # Never echo the key itself: it is a secret.
        raise ConfigError("the private key is not a Colonies private key: it must be 64 hex characters")
    try:
        return coincurve.PrivateKey(bytes.fromhex(prvkey))
    except Exception:  # coincurve refuses 0 and keys past the curve order; its message may quote the key
        raise ConfigError("the private key is not a usable secp256k1 key: check the key you were given "
                          "(64 hex characters, not all zeros)") from None


def _id_from_public(pub: coincurve.PublicKey) -> str:
    return hashlib.sha3_256(pub.format(compressed=False).hex().encode()).hexdigest()


def id_from_private_key(prvkey: str) -> str:
    """The identity (executor/user/colony id) that a key signs as."""
    return _id_from_public(_private_key(prvkey).public_key)


def sign(payload_b64: str, prvkey: str) -> str:
    """Sign the base64 payload string exactly as the Colonies server expects."""
    return _private_key(prvkey).sign_recoverable(payload_b64.encode(), hasher=_sha3).hex()


def recover_id(payload_b64: str, signature_hex: str) -> str:
    """The id of whoever signed; raises ValueError for a malformed/invalid signature."""
    try:
        sig = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise ValueError("signature is not hex") from exc
    if len(sig) != 65:
        raise ValueError("signature must be 65 bytes")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(sig, payload_b64.encode(), hasher=_sha3)
    except Exception as exc:  # coincurve raises plain Exception/ValueError
        raise ValueError(f"invalid signature: {exc}") from exc
    return _id_from_public(pub)


def random_id() -> str:
    """A 64-hex id, like the Go server's core.GenerateRandomID()."""
    return hashlib.sha256(os.urandom(32)).hexdigest()
