"""The FastAPI application: collection (/v1/*), management (/v1/admin/*), health."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tessera import __version__
from tessera.api import admin, collect
from tessera.api import audiences as audiences_api
from tessera.api import channels as channels_api
from tessera.api import coupons as coupons_api
from tessera.api import destinations as destinations_api
from tessera.api import identity as identity_api
from tessera.api import imports as imports_api
from tessera.api import journeys as journeys_api
from tessera.api import loyalty as loyalty_api
from tessera.api import open_tags as open_tags_api
from tessera.api import points as points_api
from tessera.api import profiles as profiles_api
from tessera.api import tag_values as tag_values_api
from tessera.api import tags as tags_api
from tessera.api import tiers as tiers_api
from tessera.errors import RequestError
from tessera.runtime import Instance
from tessera.services.audience_refresh import Scheduler
from tessera.services.journey_worker import JourneyWorker
from tessera.services.loyalty_worker import LoyaltyWorker
from tessera.services.pipeline import Pipeline
from tessera.services.tag_reactor import TagReactor

_ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large"}


def _problem(
    status: int, invalid: str, field: str, message: str, errors: list[tuple[str, str]], reason: str | None = None
) -> JSONResponse:
    """A service's refusal in the API's one error shape, every problem listed with its field."""
    body: dict[str, Any] = {
        "success": False,
        "error": _ERROR_CODES.get(status, invalid),
        "field": field,
        "message": message,
        "problems": [{"field": f, "message": m} for f, m in errors],
    }
    if reason is not None:
        body["reason"] = reason
    return JSONResponse(body, status_code=status)


def create_app(instance: Instance, *, local_token: str | None = None) -> FastAPI:
    """Build the app on ``instance``; the ingestion pipeline runs for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pipeline = Pipeline(instance)
        pipeline.start()
        app.state.pipeline = pipeline
        scheduler = Scheduler(instance, interval=instance.settings.audiences.scheduler_interval_seconds)
        scheduler.start()
        app.state.scheduler = scheduler
        reactor = TagReactor(instance, interval=instance.settings.tags.reactor_interval_seconds)
        pipeline.loader.listeners.append(reactor.notify)
        reactor.start()
        app.state.tag_reactor = reactor
        worker = None
        if instance.settings.journeys.worker:
            worker = JourneyWorker(instance, pipeline=pipeline)
            pipeline.loader.listeners.append(worker.wake)
            worker.start()
        app.state.journey_worker = worker
        loyalty = None
        if instance.settings.loyalty.worker:
            loyalty = LoyaltyWorker(instance, on_published=worker.wake if worker is not None else None)
            pipeline.loader.listeners.append(loyalty.wake)
            loyalty.start()
        app.state.loyalty_worker = loyalty
        try:
            yield
        finally:
            if loyalty is not None:
                loyalty.stop()
            if worker is not None:
                worker.stop()
            reactor.stop()
            scheduler.stop()
            pipeline.stop()

    app = FastAPI(
        title="Tessera CDP",
        version=__version__,
        description="Collect (Segment-compatible), unify, tag, select, activate, measure.",
        lifespan=lifespan,
    )
    app.state.instance = instance
    app.state.local_token = local_token or secrets.token_urlsafe(32)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        body: dict[str, Any]
        if isinstance(exc.detail, dict):
            body = {"success": False, **exc.detail}
        else:
            body = {"success": False, "error": "http_error", "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 in the same shape as every other error, naming the first bad field."""
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body", "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "body", "message": "invalid request"}
        body = {"success": False, "error": "invalid_request", **first, "problems": problems}
        return JSONResponse(jsonable_encoder(body), status_code=422)

    @app.exception_handler(RequestError)
    async def _refused(_request: Request, exc: RequestError) -> JSONResponse:
        return _problem(exc.status, exc.error, exc.field, exc.message, exc.errors, exc.reason)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        pipeline: Pipeline | None = getattr(app.state, "pipeline", None)
        return {
            "status": "ok",
            "version": __version__,
            "loader_error": pipeline.loader.last_error if pipeline else None,
            "scheduler_error": getattr(getattr(app.state, "scheduler", None), "last_error", None),
            "tag_reactor_error": getattr(getattr(app.state, "tag_reactor", None), "last_error", None),
            "journey_worker_error": getattr(getattr(app.state, "journey_worker", None), "last_error", None),
            "loyalty_worker_error": getattr(getattr(app.state, "loyalty_worker", None), "last_error", None),
        }

    app.add_middleware(collect.CollectFastLane, state=app.state)
    app.include_router(collect.router)
    app.include_router(admin.router)
    app.include_router(imports_api.router)
    app.include_router(profiles_api.router)
    app.include_router(identity_api.router)
    app.include_router(audiences_api.router)
    app.include_router(destinations_api.router)
    app.include_router(tags_api.router)
    app.include_router(tag_values_api.router)
    app.include_router(open_tags_api.router)
    app.include_router(journeys_api.router)
    app.include_router(channels_api.admin_router)
    app.include_router(channels_api.public_router)
    app.include_router(coupons_api.router)
    app.include_router(points_api.router)
    app.include_router(tiers_api.router)
    app.include_router(loyalty_api.router)
    return app
