"""The dashboard: GET / serves one HTML page and /dashboard/static/ its script and style sheet,
plain files in this package (no CDN, no build step). The page reads the public JSON API only;
every change it makes sends the X-API-Key the user typed in (kept in sessionStorage).

Assets are addressed by their content hash (`?v=`), so they are cached for a year while the page
itself is revalidated on every load."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from service.core.http_errors import NotFound

STATIC = Path(__file__).with_name("static")
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["dashboard"])


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """An asset's bytes and the first 12 hex digits of their sha256."""
    data = (STATIC / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:12]


@cache
def _page() -> bytes:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    for name in ASSETS:
        html = html.replace(f"{name}?v=", f"{name}?v={_asset(name)[1]}")
    return html.encode()


@router.get(
    "/",
    response_class=HTMLResponse,
    summary="the dashboard: models, jobs, datasets and a form to try a model (HTML)",
)
def dashboard() -> HTMLResponse:
    return HTMLResponse(
        _page(),
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": PAGE_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/dashboard/static/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no dashboard asset {name!r}")
    data, _ = _asset(name)
    return Response(
        data,
        media_type=ASSETS[name],
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )
