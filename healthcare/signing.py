"""The receipt issuer's Ed25519 key (docs/receipts.md §5).

The private key comes from ``AQTA_RECEIPT_SIGNING_KEY`` (or the file named by
``AQTA_RECEIPT_SIGNING_KEY_FILE``): base64url of the raw 32-byte seed, or a PEM
(PKCS#8) private key. In the embedded mode, with neither set, a key is generated on first
use and kept in ``var/receipt_signing_key`` (mode 0600), beside the other generated
secrets; outside it the variable is required.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from aqta.env import env

ENV_NAME = "AQTA_RECEIPT_SIGNING_KEY"
LOCAL_FILE = "receipt_signing_key"
_B64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding; ``ValueError`` on anything else."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url without padding") from None


def key_id(public_key: bytes) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class IssuerKey:
    private_key: Ed25519PrivateKey
    public_key_raw: bytes

    @property
    def public_key(self) -> str:
        """The public key as a receipt carries it: base64url of the raw 32 bytes."""
        return b64url_encode(self.public_key_raw)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key_raw)

    @property
    def seed(self) -> str:
        """The private key as ``AQTA_RECEIPT_SIGNING_KEY`` takes it (a secret: never log it)."""
        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return b64url_encode(raw)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> IssuerKey:
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private_key, raw)

    @classmethod
    def generate(cls) -> IssuerKey:
        return cls.from_private_key(Ed25519PrivateKey.generate())


def parse_private_key(value: str, source: str = ENV_NAME) -> Ed25519PrivateKey:
    """A base64url 32-byte seed or a PEM Ed25519 private key; ImproperlyConfigured if neither."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise ImproperlyConfigured(f"{source} is not a readable PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ImproperlyConfigured(f"{source} must be an Ed25519 key")
        return key
    try:
        seed = b64url_decode(text)
    except ValueError:
        raise ImproperlyConfigured(
            f"{source} must be base64url (no padding) of a 32-byte Ed25519 seed, or a PEM key"
        ) from None
    if len(seed) != 32:
        raise ImproperlyConfigured(f"{source} must decode to 32 bytes, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _local_seed(var_dir: Path) -> str:
    """The embedded mode's seed in ``var/``, created on first use (0600, never overwritten)."""
    path = var_dir / LOCAL_FILE
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    seed = b64url_encode(os.urandom(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(seed)
    return seed


def key_file() -> Path | None:
    """The file the issuer key is read from (rotated in place), or None for a key given
    in the environment variable itself."""
    if ENV_NAME in os.environ:
        return None
    named = os.environ.get(f"{ENV_NAME}_FILE")
    if named:
        return Path(named)
    if settings.EMBEDDED:
        return Path(settings.VAR_DIR) / LOCAL_FILE
    return None


def load_issuer_key() -> IssuerKey:
    """Read the issuer key from the environment, or (embedded mode) from ``var/``."""
    value = env(ENV_NAME)
    if value:
        return IssuerKey.from_private_key(parse_private_key(value))
    if settings.EMBEDDED:
        path = Path(settings.VAR_DIR) / LOCAL_FILE
        return IssuerKey.from_private_key(
            parse_private_key(_local_seed(Path(settings.VAR_DIR)), str(path))
        )
    raise ImproperlyConfigured(
        f"{ENV_NAME} is not set. Outside the embedded mode (DATABASE_URL or REDIS_URL is set) "
        f"receipts need {ENV_NAME} (or {ENV_NAME}_FILE): base64url of a 32-byte Ed25519 seed, "
        "or a PEM private key."
    )


def key_file_write(path: Path, key: IssuerKey) -> None:
    """Replace the key file atomically with ``key``'s seed (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.seed)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@cache
def _loaded(path: str | None, mtime_ns: int) -> IssuerKey:
    return load_issuer_key()


def issuer_key() -> IssuerKey:
    """The process's issuer key. A key file is read again when it changes (a rotation
    takes effect without a restart); a key in the variable itself is read once."""
    path = key_file()
    try:
        mtime = path.stat().st_mtime_ns if path is not None else 0
    except FileNotFoundError:
        mtime = -1
    return _loaded(str(path) if path else None, mtime)


def issuer_key_forget() -> None:
    """Read the key again on next use (after a rotation in this process, and in tests)."""
    _loaded.cache_clear()
