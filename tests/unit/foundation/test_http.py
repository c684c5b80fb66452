"""Who may call what: API keys by role, open when none is configured."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from streamrec.foundation.http import Access


def _app(access: Access) -> FastAPI:
    app = FastAPI()

    @app.get("/answers", dependencies=[Depends(access.require("read"))])
    async def answers() -> dict:
        return {"ok": True}

    @app.get("/profiles", dependencies=[Depends(access.require("admin"))])
    async def profiles() -> dict:
        return {"ok": True}

    return app


def _statuses(access: Access, key: str | None) -> tuple[int, int]:
    async def call() -> tuple[int, int]:
        headers = {} if key is None else {"X-API-Key": key}
        transport = httpx.ASGITransport(app=_app(access))
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
            return (await http.get("/answers")).status_code, (await http.get("/profiles")).status_code

    return asyncio.run(call())


def test_keys_by_role_with_reasons():
    access = Access(SecretStr("r1, r2"), SecretStr("a1"))
    assert _statuses(access, None) == (401, 401)
    assert _statuses(access, "nope") == (401, 401)
    assert _statuses(access, "r2") == (200, 403)
    assert _statuses(access, "a1") == (200, 200)
    assert access.admin_key == "a1" and access.enabled


def test_without_keys_everything_is_open():
    access = Access(SecretStr(""), SecretStr(" , "))
    assert not access.enabled and access.admin_key is None
    assert _statuses(access, None) == (200, 200)


def test_a_peer_url_passes_only_with_an_admin_keys_signature():
    access = Access(SecretStr(""), SecretStr("a1,a2"))
    url = "http://worker-2.workers:6066"
    assert access.vouches_for(url, access.sign(url))
    assert access.vouches_for(url, Access(SecretStr(""), SecretStr("a2")).sign(url))  # any admin key signs
    assert not access.vouches_for(url, "")
    assert not access.vouches_for("http://169.254.169.254:80", access.sign(url))  # a signature is per URL
    assert not access.vouches_for(url, Access(SecretStr(""), SecretStr("stolen?")).sign(url))


def test_without_admin_keys_only_a_plain_host_and_port_url_passes():
    access = Access(SecretStr(""), SecretStr(""))
    assert access.sign("http://w:6066") == ""
    assert access.vouches_for("http://w:6066", "") and access.vouches_for("https://w.example:443/", "")
    for url in (
        "file:///etc/passwd",
        "http://w",
        "http://w:6066/admin",
        "http://w:6066?x=1",
        "http://u:p@w:6066",
        "gopher://w:70",
        "http://w:99999",
        "not a url",
    ):
        assert not access.vouches_for(url, ""), url
