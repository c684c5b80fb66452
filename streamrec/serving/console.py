"""The web console at /console: one page for the people who run a shop's
recommendations, over JSON endpoints of its own beside the API's.

The page (HTML, JavaScript and CSS in `index/console_static/`, shipped in the
package: no build step, no network) holds no data; every endpoint it calls
is behind the API keys: a read key sees the overview, the models, the
quality reports and the recommendations; an admin key also sees a user's
features and may roll back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response

from streamrec.foundation.http import Access
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.store import Manifest, StoreError
from streamrec.index.kinds import IndexSpec
from streamrec.serving.live import LiveModel
from streamrec.serving.pulse import Pulse

ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
REPORT_KINDS = {".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml"}
REPORT_MAX_BYTES = 5 * 1024 * 1024  # a JSON report larger than this is listed without its summary
VERSIONS_SHOWN = 50  # the newest versions the models page lists
CONSOLE_HEADER = "X-Streamrec-Console"

Rollback = Callable[[], Awaitable[str]]  # makes the previous version current again, returns it


def add_console(api: FastAPI, live: LiveModel, pulse: Pulse | None, rollback: Rollback | None) -> None:
    settings = live.settings
    access = Access.from_settings(settings.access)
    readers, admins = [Depends(access.require("read"))], [Depends(access.require("admin"))]
    reports = settings.data_dir / "reports"
    pseudonym = Pseudonyms.from_settings(settings.access)
    static = resources.files(__package__) / "console_static"

    @api.get("/console", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text())

    @api.get("/console/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "no such asset")
        return Response((static / name).read_bytes(), media_type=ASSETS[name])

    @api.get("/console/api/overview", summary="The console's live overview", dependencies=readers)
    async def overview() -> dict:
        pulse_view = pulse.overview() if pulse is not None else {"points": []}
        return {**pulse_view, "model_version": live.version, "now": time.time()}

    @api.get("/console/api/models", summary="Every model version with its figures", dependencies=readers)
    async def models() -> dict:
        store = live.store
        versions = store.versions()[-VERSIONS_SHOWN:]
        return {
            "current": store.current(),
            "serving": live.version,
            "versions": [_version_view(store.load_manifest(v)) for v in reversed(versions)],
        }

    @api.post("/console/api/rollback", summary="Make the previous version current (admin)", dependencies=admins)
    async def roll_back(request: Request) -> dict:
        # A header no plain form or cross-site request can send: with no keys set
        # (a laptop), another site's page must not roll back through the browser.
        if request.headers.get(CONSOLE_HEADER) != "1":
            raise HTTPException(403, f"a rollback needs the {CONSOLE_HEADER} header the console sends")
        if rollback is None:
            raise HTTPException(503, "this server cannot announce a rollback")
        try:
            return {"current": await rollback()}
        except StoreError as exc:
            raise HTTPException(409, str(exc)) from None

    @api.get("/console/api/users/{user_id}", summary="A user's features (admin)", dependencies=admins)
    async def user(user_id: str = PathParam(..., min_length=1, max_length=settings.limits.max_id_chars)) -> dict:
        features = live.features.get(pseudonym(user_id))
        if features is None:
            raise HTTPException(404, f"unknown user {user_id!r}")
        return {**features.to_view(features.last_ts, settings.features.affinity_half_life_s), "user_id": user_id}

    @api.get("/console/api/reports", summary="The reports in DATA_DIR/reports", dependencies=readers)
    async def report_list() -> dict:
        files = sorted(p for p in reports.glob("*") if p.suffix in REPORT_KINDS) if reports.is_dir() else []
        summaries = {p.name: _json(p) for p in files if p.suffix == ".json"}
        return {"images": [p.name for p in files if p.suffix != ".json"], "summaries": summaries}

    @api.get("/console/api/reports/{name}", summary="One report file", dependencies=readers)
    async def report(name: str) -> FileResponse:
        path = reports / name
        if Path(name).name != name or path.suffix not in REPORT_KINDS or not path.is_file():
            raise HTTPException(404, "no such report")
        return FileResponse(path, media_type=REPORT_KINDS[path.suffix])


def _version_view(manifest: Manifest) -> dict:
    window = manifest.data_window
    return {
        "version": manifest.version,
        "created": manifest.created,
        "kind": manifest.training.kind,
        "why": manifest.training.why,
        "train_s": manifest.training.seconds,
        "window": None
        if window is None
        else {"events": window.events, "first_ts": window.first_ts, "last_ts": window.last_ts, "items": window.items},
        "recall@20": manifest.metric("test", "recall@20"),
        "ndcg@20": manifest.metric("test", "ndcg@20"),
        "popularity_recall@20": manifest.metric("popularity", "recall@20"),
        "gate": {
            "passed": manifest.gate.passed,
            "forced": manifest.gate.forced,
            "against": manifest.gate.against,
            "current_recall": manifest.gate.current_recall,
        },
        "index": _index_view(manifest.index),
        "blend": manifest.params.blend.to_json(),
    }


def _index_view(index: dict) -> dict | None:
    """The trainer's index choice and what it measured; None: as configured."""
    if not index:
        return None
    measured = index.get("measured")
    numbers = ("k", "recall", "p99_ms", "bytes_per_item")
    if not isinstance(measured, dict) or not all(isinstance(measured.get(n), int | float) for n in numbers):
        measured = None  # a version tuned before the figures were kept
    return {"label": IndexSpec.from_dict(index).label(), "measured": measured and {n: measured[n] for n in numbers}}


def _json(path: Path) -> dict | None:
    """A report's JSON without its long series (the page shows summaries)."""
    if path.stat().st_size > REPORT_MAX_BYTES:
        return None
    try:
        values = json.loads(path.read_text())
    except ValueError:
        return None
    return (
        {k: v for k, v in values.items() if not isinstance(v, list) or len(v) <= 20}
        if isinstance(values, dict)
        else None
    )
