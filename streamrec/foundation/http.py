"""Serving a FastAPI app inside a process that owns its own signal handling,
and who may call it (API keys)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import urlsplit

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from streamrec.foundation.settings import AccessSettings

API_KEY_HEADER = "X-API-Key"
_API_KEY = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="A key from STREAMREC_API_KEYS.")
Role = Literal["read", "admin"]


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handlers: the process's runner decides when
    to stop, so that the worker can flush and commit before the port closes."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


async def serve_http(app: FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; fails at once if the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it a response's headers and
    # body wait out the client's delayed ACK (40 ms on Linux) on keep-alive.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}; set another port") from None
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving
        sock.close()


def add_metrics(app: FastAPI, render: Callable[[], bytes], access: Access) -> None:
    """GET /metrics (Prometheus text) on `app`, for read keys when keys are set."""

    @app.get("/metrics", summary="Prometheus metrics", dependencies=[Depends(access.require("read"))])
    async def metrics() -> Response:
        return Response(render(), media_type=CONTENT_TYPE_LATEST)


def metrics_app(render: Callable[[], bytes], access: Access) -> FastAPI:
    """An app serving only /metrics, for a port of its own (internal, scraped)."""
    app = FastAPI(title="streamrec metrics", docs_url=None, redoc_url=None, openapi_url=None)
    add_metrics(app, render, access)
    return app


class Access:
    """Who may call what: read keys (answers, metrics) and admin keys (user
    profiles too). With no key configured every endpoint is open, as on a
    laptop or a private network; `/healthz` always is."""

    def __init__(self, read_keys: SecretStr, admin_keys: SecretStr):
        self._admin = _keys(admin_keys)
        self._read = _keys(read_keys)

    @classmethod
    def from_settings(cls, settings: AccessSettings) -> Access:
        return cls(settings.api_keys, settings.admin_api_keys)

    @property
    def enabled(self) -> bool:
        return bool(self._read or self._admin)

    @property
    def admin_key(self) -> str | None:
        """A key this process sends when it forwards a request to another (a worker to a user's owner)."""
        return self._admin[0] if self._admin else None

    @property
    def peer_key(self) -> str | None:
        """A key this process sends to read another's status: an admin key, else a read key."""
        return self.admin_key or (self._read[0] if self._read else None)

    def sign(self, url: str) -> str:
        """A worker's proof, sent with its advertised URL, that it holds an admin
        key; empty when no admin key is set."""
        return self.sign_for("worker-url", url.encode())

    def sign_for(self, purpose: str, payload: bytes) -> str:
        """Proof that an admin key holder wrote `payload` for `purpose`; empty without admin keys."""
        return _signature(self._admin[0], purpose, payload) if self._admin else ""

    def signed(self, purpose: str, payload: bytes, signature: str) -> bool:
        """Whether `signature` is `sign_for(purpose, payload)` under one of the
        admin keys; anything passes where none is set (an open laptop setup)."""
        if not self._admin:
            return True
        return any(hmac.compare_digest(_signature(key, purpose, payload), signature) for key in self._admin)

    def vouches_for(self, url: str, signature: str) -> bool:
        """Whether a peer's advertised URL may receive a forwarded request (and
        with it this process's admin key). Any group member can advertise any
        URL: with admin keys set only URLs signed with one of them pass; in any
        case only a plain http(s)://host:port URL does."""
        try:
            parts = urlsplit(url)
            plain = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port is not None
        except ValueError:
            return False
        if not plain or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            return False
        return self.signed("worker-url", url.encode(), signature)

    def require(self, role: Role) -> Callable[[str | None], Awaitable[None]]:
        """A FastAPI dependency: 401 without a known key, 403 for a read key where admin is needed."""

        async def check(key: str | None = Security(_API_KEY)) -> None:
            if not self.enabled:
                return
            if key is None:
                raise HTTPException(401, f"an API key is needed: send it in the {API_KEY_HEADER} header")
            if _known(key, self._admin):
                return
            if not _known(key, self._read):
                raise HTTPException(401, "unknown API key")
            if role == "admin":
                raise HTTPException(
                    403, "this key may not read or forget users or change rules or experiments: use an admin key"
                )

        return check


def _signature(key: str, purpose: str, payload: bytes) -> str:
    return hmac.new(key.encode(), f"streamrec-{purpose}:".encode() + payload, hashlib.sha256).hexdigest()


def _keys(secret: SecretStr) -> list[str]:
    return [key.strip() for key in secret.get_secret_value().split(",") if key.strip()]


def _known(key: str, keys: list[str]) -> bool:
    """Compared in constant time, so a timing does not give a key away."""
    return any(hmac.compare_digest(key.encode(), known.encode()) for known in keys)
