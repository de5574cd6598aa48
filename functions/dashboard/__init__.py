"""/dashboard: the operators' page, served by the same app locally and on Modal."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from functions.dashboard import views
from functions.dashboard.session import NotSignedIn, Sessions
from jobhook.config import Settings


def install(app: FastAPI, settings: Settings) -> None:
    app.state.sessions = Sessions(settings)
    app.include_router(views.router)

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        # A fragment's poll cannot follow a redirect to a form: it gets 401, and dashboard.js
        # sends the page to the sign-in form itself.
        if request.url.path.startswith("/dashboard/fragments/") or request.method != "GET":
            return Response("sign in first", status_code=401, media_type="text/plain")
        return RedirectResponse("/dashboard/login", status_code=303)

    async def forged(request: Request, exc: Exception) -> Response:
        return views.page(request, "forbidden.html", status_code=403, operator=None)

    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(views.Forged, forged)
