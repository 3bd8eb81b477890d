"""FastAPI dependencies shared by the routers: the instance and the admin-token check."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request

from tessera.runtime import Instance
from tessera.services import tokens


def get_instance(request: Request) -> Instance:
    inst: Instance = request.app.state.instance
    return inst


def require_admin(request: Request) -> list[str]:
    """The management API needs ``Authorization: Bearer <admin token>`` (``tessera token create``)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status_code=401,
            detail={"error": "unauthorized", "message": "send Authorization: Bearer <admin token>"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    local = getattr(request.app.state, "local_token", None)
    if local is not None and secrets.compare_digest(token.strip(), local):
        return ["admin"]
    inst = get_instance(request)
    with inst.operational.session() as s:
        scopes = tokens.check_token(session=s, token=token.strip())
    if scopes is None:
        raise HTTPException(
            status_code=401,
            detail={"error": "unauthorized", "message": "unknown or revoked token"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    return scopes


def load_acknowledged(request: Request) -> None:
    """Load what the server has acknowledged, so the request sees every message so far."""
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is not None:
        pipeline.loader.flush(timeout=120)
