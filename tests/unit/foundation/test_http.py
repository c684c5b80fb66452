"""Who may call what: API keys by role, open when none is configured."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from foundation.http import Access


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
