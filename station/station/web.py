"""The review web application (Starlette + Jinja2), served by uvicorn.

No page but ``/healthz`` is served without a login. Sessions are signed
cookies (itsdangerous via Starlette's SessionMiddleware; Secure, HttpOnly,
SameSite=Strict); every POST carries the session's CSRF token; logins are
rate limited per user name and per client address. Roles: ``operator``
reviews; ``supervisor`` reviews and also sees device health and the audit
pages. Every action, allowed or refused, is written to the append-only action
log with the operator id. Live parts of a page (``#live``) are re-fetched when
the server pushes a change over Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from edge.audit.records import OUTCOMES
from station.config import StationConfig
from station.errors import DecisionError, StationError
from station.people import LoginLimiter, Signers, check_login
from station.references import load_references
from station.store import Store, iso

log = logging.getLogger(__name__)

OUTCOME_LABELS = {"confirmed": "Confirmed", "false_alert": "False alert", "not_engaged": "Not engaged",
                  "inconclusive": "Inconclusive", "duplicate": "Duplicate"}
assert set(OUTCOME_LABELS) == set(OUTCOMES)
SESSION_S = 8 * 3600
TEMPLATES = Path(__file__).with_name("templates")


class DeniedError(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _fmt_time(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def secret_key(state_dir: Path) -> str:
    """The cookie-signing secret, created once (0600) in the state directory."""
    from edge.fsutil import atomic_write

    path = state_dir / "cookie-secret"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, secrets.token_hex(32).encode(), 0o600)
    return path.read_text().strip()


class StationApp:
    def __init__(self, cfg: StationConfig, store: Store, *, wake_publisher: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.wake_publisher = wake_publisher
        self.signers = Signers(cfg.keys_dir)
        self.limiter = LoginLimiter()
        self.entries = (load_references(Path(cfg.bundles_dir), Path(cfg.trust_file))
                        if cfg.bundles_dir else {})
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
        self.env.filters["t"] = _fmt_time
        self.env.filters["iso"] = iso
        routes = [
            Route("/healthz", self.healthz),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.queue_page),
            Route("/events", self.events),
            Route("/incident/{incident_id:int}", self.incident_page),
            Route("/incident/{incident_id:int}/decide", self.decide, methods=["POST"]),
            Route("/crop/{event_id}", self.crop),
            Route("/reference/{subject_ref}", self.reference),
            Route("/health", self.health_page),
            Route("/transparency", self.transparency_page),
            Route("/transparency/chart.svg", self.chart),
            Route("/audit", self.audit_page),
        ]
        middleware = [Middleware(SessionMiddleware, secret_key=secret_key(cfg.state_dir),
                                 session_cookie="station_session", max_age=SESSION_S, same_site="strict",
                                 https_only=cfg.secure_cookies)]
        self.app = Starlette(routes=routes, middleware=middleware,
                             exception_handlers={DeniedError: self._denied})

    # --- plumbing -----------------------------------------------------------------------

    async def _denied(self, _request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DeniedError)
        return exc.response

    def _csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return token

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        user = request.session.get("user")
        html = self.env.get_template(name).render(
            user=user, role=request.session.get("role"), csrf=self._csrf(request), now=self.clock(), **ctx)
        return HTMLResponse(html, status_code=status)

    async def audit(self, username: str, action: str, detail: str, ok: bool) -> None:
        await run_in_threadpool(self.store.log, username, action, detail, ok, self.clock())

    async def require(self, request: Request, role: str | None = None) -> str:
        user = request.session.get("user")
        if not isinstance(user, str) or float(request.session.get("since", 0)) < self.clock() - SESSION_S:
            request.session.clear()
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                raise DeniedError(RedirectResponse("/login", status_code=303))
            raise DeniedError(PlainTextResponse("login required", status_code=401))
        if role is not None and request.session.get("role") != role:
            await self.audit(user, "forbidden", f"{request.method} {request.url.path} needs {role}", False)
            raise DeniedError(self.render(request, "message.html", 403, title="Not allowed",
                                     message=f"This page is for the {role} role."))
        return user

    async def form(self, request: Request, user: str) -> dict[str, str]:
        form = await request.form()
        sent = form.get("csrf")
        expected = request.session.get("csrf")
        if not (isinstance(sent, str) and isinstance(expected, str) and hmac.compare_digest(sent, expected)):
            await self.audit(user, "csrf_refused", f"POST {request.url.path}", False)
            raise DeniedError(PlainTextResponse("CSRF token missing or wrong", status_code=403))
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # --- pages --------------------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html")

    async def login(self, request: Request) -> Response:
        form = await self.form(request, "-")
        username = form.get("username", "")[:64]
        client = request.client.host if request.client else "?"
        keys = (f"user:{username}", f"addr:{client}")
        now = self.clock()
        if self.limiter.blocked(keys, now):
            await self.audit(username or "-", "login_rate_limited", f"from {client}", False)
            return self.render(request, "login.html", 429,
                               error="Too many failed logins; wait a few minutes.")
        user = await run_in_threadpool(self.store.user, username)
        ok = await run_in_threadpool(check_login, user["password_hash"] if user else None,
                                     form.get("password", ""))
        if not ok or user is None:
            self.limiter.failed(keys, now)
            await self.audit(username or "-", "login_failed", f"from {client}", False)
            return self.render(request, "login.html", 401, error="Wrong user name or password.")
        self.limiter.succeeded(keys)
        request.session.clear()
        request.session.update(user=username, role=user["role"], since=now, csrf=secrets.token_urlsafe(32))
        await self.audit(username, "login", f"from {client}", True)
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        user = await self.require(request)
        await self.form(request, user)
        request.session.clear()
        await self.audit(user, "logout", "", True)
        return RedirectResponse("/login", status_code=303)

    async def queue_page(self, request: Request) -> Response:
        await self.require(request)
        rows = await run_in_threadpool(self.store.queue)
        total = await run_in_threadpool(self.store.pending_count)
        name = "queue_live.html" if request.query_params.get("fragment") else "queue.html"
        return self.render(request, name, incidents=rows, total=total)

    async def events(self, request: Request) -> Response:
        await self.require(request)

        async def stream() -> AsyncIterator[str]:
            last: tuple[float, float] | None = None
            ticks = 0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                marker = await run_in_threadpool(self.store.change_marker)
                ticks += 1
                if marker != last:
                    last = marker
                    yield f"event: change\ndata: {marker[0]}:{marker[1]}\n\n"
                elif ticks % 10 == 0:  # every 5 s: the health page flags quiet devices without news
                    yield "event: tick\ndata: \n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def incident_page(self, request: Request) -> Response:
        await self.require(request)
        inc = await run_in_threadpool(self.store.incident, request.path_params["incident_id"])
        if inc is None:
            return self.render(request, "message.html", 404, title="Not found", message="No such incident.")
        name = "incident_live.html" if request.query_params.get("fragment") else "incident.html"
        has_reference = bool(self.cfg.references_dir) and self._reference_path(inc["subject_ref"]) is not None
        return self.render(request, name, inc=inc, outcomes=OUTCOME_LABELS, has_reference=has_reference,
                           entry=self.entries.get(inc["subject_ref"]),
                           message=request.query_params.get("msg"))

    async def decide(self, request: Request) -> Response:
        user = await self.require(request)
        form = await self.form(request, user)
        incident_id = request.path_params["incident_id"]
        outcome, note = form.get("outcome", ""), form.get("note", "")
        try:
            result = await run_in_threadpool(self.store.decide, incident_id, user, outcome, note,
                                              self.signers.sign, self.clock())
        except (DecisionError, StationError) as exc:
            await self.audit(user, "decision_refused", f"incident {incident_id} {outcome}: {exc}", False)
            inc = await run_in_threadpool(self.store.incident, incident_id)
            if inc is None:
                return self.render(request, "message.html", 404, title="Not found", message=str(exc))
            return self.render(request, "incident.html", 409, inc=inc, outcomes=OUTCOME_LABELS,
                               has_reference=False, entry=self.entries.get(inc["subject_ref"]),
                               message=str(exc))
        await self.audit(user, "decision", f"incident {incident_id} {outcome} -> {result['state']}"
                         f" ({result['alerts']} alert(s)) note={note!r}", True)
        if self.wake_publisher is not None:
            self.wake_publisher()
        msg = ("Decision recorded; a second operator must confirm." if result["state"] == "awaiting_second"
               else "Decision recorded and signed.")
        return RedirectResponse(f"/incident/{incident_id}?msg={msg}", status_code=303)

    async def crop(self, request: Request) -> Response:
        user = await self.require(request)
        jpeg = await run_in_threadpool(self.store.crop, request.path_params["event_id"])
        if jpeg is None:
            return PlainTextResponse("no crop (deleted or never sent)", status_code=404)
        await self.audit(user, "view_crop", request.path_params["event_id"], True)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def _reference_path(self, subject_ref: str) -> Path | None:
        if not self.cfg.references_dir or "/" in subject_ref or subject_ref.startswith("."):
            return None
        p = Path(self.cfg.references_dir) / f"{subject_ref}.jpg"
        return p if p.is_file() else None

    async def reference(self, request: Request) -> Response:
        user = await self.require(request)
        p = self._reference_path(request.path_params["subject_ref"])
        if p is None:
            return PlainTextResponse("no enrolment photo configured", status_code=404)
        await self.audit(user, "view_reference", request.path_params["subject_ref"], True)
        return Response(p.read_bytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def health_page(self, request: Request) -> Response:
        await self.require(request, "supervisor")
        devices = await run_in_threadpool(self.store.devices, self.clock(), self.cfg.quiet_after_s)
        name = "health_live.html" if request.query_params.get("fragment") else "health.html"
        return self.render(request, name, devices=devices, quiet_after=self.cfg.quiet_after_s)

    async def transparency_page(self, request: Request) -> Response:
        await self.require(request)
        docs = await run_in_threadpool(self.store.documents, "transparency")
        latest: dict[str, dict[str, Any]] = {}
        for d in docs:
            latest[d["device_id"]] = d
        name = "transparency_live.html" if request.query_params.get("fragment") else "transparency.html"
        return self.render(request, name, latest=latest, stamp=int(self.clock()))

    async def chart(self, request: Request) -> Response:
        await self.require(request)
        docs = await run_in_threadpool(self.store.documents, "transparency")
        svg = await run_in_threadpool(transparency_chart, docs)
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def audit_page(self, request: Request) -> Response:
        await self.require(request, "supervisor")
        actions = await run_in_threadpool(self.store.actions)
        deletions = await run_in_threadpool(self.store.deletions)
        refusals = await run_in_threadpool(self.store.refusal_rows)
        checkpoints = await run_in_threadpool(self.store.documents, "checkpoint", None, 50)
        return self.render(request, "audit.html", actions=actions, deletions=deletions, refusals=refusals,
                           checkpoints=checkpoints)


def transparency_chart(docs: list[dict[str, Any]]) -> bytes:
    """Alerts, confirmed and false alerts over time per device, as SVG (matplotlib, no network)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.dates import DateFormatter

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    series: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
    for d in docs:
        dep = (d["body"] or {}).get("deployment")
        if isinstance(dep, dict) and isinstance(dep.get("counters"), dict):
            at = datetime.fromtimestamp(d["at"], UTC)
            series.setdefault(d["device_id"], []).append((at, dep["counters"]))
    styles = {"alerts": "-", "confirmed": "--", "false_alerts": ":"}
    for device, points in sorted(series.items()):
        xs: Any = [p[0] for p in points]
        for key, style in styles.items():
            ax.plot(xs, [p[1].get(key, 0) for p in points], style, marker=".", label=f"{device} {key}")
    ax.set_ylabel("count (current deployment)")
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    if series:
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no transparency figures received yet", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return buf.getvalue()
