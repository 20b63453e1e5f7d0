"""Encryption at rest for provider credentials and logged content (Fernet, AES-128-CBC +
HMAC). ``AQTA_ENCRYPTION_KEYS`` holds one or more comma-separated Fernet keys: the first
encrypts, all decrypt, so keys can be rotated without a re-encryption outage."""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@functools.cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.AQTA_ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("cannot decrypt: wrong AQTA_ENCRYPTION_KEYS?") from None
