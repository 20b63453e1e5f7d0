"""API key format, checksum and digest.

Format: ``sk-aqta-`` + 40 base62 characters from :mod:`secrets` (~238 bits) + a 6-character
base62 CRC32 of those 40. The fixed prefix lets secret scanners recognise our keys; the
checksum rejects a mistyped or truncated key before any look-up.

Keys are high-entropy, so they are stored as HMAC-SHA256 with a server-side pepper
(``AQTA_API_KEY_PEPPER``, never in the database): fast enough for every request, and a
leaked table alone cannot be used to test guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib

from django.conf import settings

PREFIX = "sk-aqta-"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 40
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
DISPLAY_PREFIX_LENGTH = len(PREFIX) + 4
_ALPHABET_SET = frozenset(ALPHABET)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return PREFIX + body + checksum(body)


def is_well_formed(secret: str) -> bool:
    """Shape and checksum only: no I/O, constant work, safe to call on any input."""
    if len(secret) != KEY_LENGTH or not secret.startswith(PREFIX):
        return False
    rest = secret[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(rest):
        return False
    body, check = rest[:BODY_LENGTH], rest[BODY_LENGTH:]
    return hmac.compare_digest(checksum(body), check)


def digest(secret: str) -> str:
    pepper = settings.AQTA_API_KEY_PEPPER.encode()
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def display_parts(secret: str) -> tuple[str, str]:
    """(prefix, last4) kept for display: 4 random characters after ``sk-aqta-`` and the tail."""
    return secret[:DISPLAY_PREFIX_LENGTH], secret[-4:]
