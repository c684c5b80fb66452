"""Pseudonymous ids: keyed, stable, unguessable without the key, off by default."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from streamrec.foundation.privacy import PSEUDONYM_BYTES, Pseudonyms
from streamrec.foundation.settings import Settings


def test_a_pseudonym_is_the_truncated_hmac_of_the_id_under_the_key():
    pseudonyms = Pseudonyms(SecretStr("k1"))
    expected = hmac.new(b"k1", b"alice", hashlib.sha256).digest()[:PSEUDONYM_BYTES].hex()
    assert pseudonyms("alice") == expected == pseudonyms("alice") and len(expected) == 32
    assert pseudonyms("bob") != expected
    assert Pseudonyms(SecretStr("k2"))("alice") != expected  # a new key: fresh profiles


def test_without_a_key_ids_are_kept_as_sent():
    assert not Pseudonyms.from_settings(Settings().access).enabled
    assert Pseudonyms.disabled()("alice") == "alice"
    assert Pseudonyms(SecretStr("k"))("\udcff") != "\udcff"  # any str, even one JSON let through unpaired
