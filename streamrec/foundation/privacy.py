"""Pseudonymous user ids: a keyed hash applied where an id enters the product.

With `STREAMREC_PSEUDONYMISE_KEY` set, every user id is replaced by
HMAC-SHA256(key, id), truncated to 128 bits, before it is stored, logged or
published: the tables, their changelogs, the trainer's cache, the
recommendations topic and the control topic only ever hold the pseudonym.
Callers keep using the shop's own ids; each entry point (the agents, the
trainer's reader, the HTTP endpoints, `streamrec forget`) hashes them the same
way. Without the key the pseudonym is unguessable, so ids cannot be recovered
by hashing candidate ids; with a new key every user starts a fresh profile.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from pydantic import SecretStr

from streamrec.foundation.settings import AccessSettings

PSEUDONYM_BYTES = 16  # 128 bits: collisions need about 2**64 users


class Pseudonyms:
    """`pseudonyms(user_id)`: the id the product keeps for a shop's user id
    (the id itself when no key is set)."""

    def __init__(self, key: SecretStr):
        secret = key.get_secret_value().encode()
        self.enabled = bool(secret)
        # Cached: the ingest path hashes every event's user, and users repeat.
        self._hash = functools.lru_cache(maxsize=1 << 16)(functools.partial(_pseudonym, secret))

    @classmethod
    def from_settings(cls, settings: AccessSettings) -> Pseudonyms:
        return cls(settings.pseudonymise_key)

    @classmethod
    def disabled(cls) -> Pseudonyms:
        return cls(SecretStr(""))

    def __call__(self, user_id: str) -> str:
        return self._hash(user_id) if self.enabled else user_id


def _pseudonym(secret: bytes, user_id: str) -> str:
    digest = hmac.new(secret, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return digest[:PSEUDONYM_BYTES].hex()
