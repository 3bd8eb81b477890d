"""FastAPI dependencies shared by the routers: the instance, who is calling (admin token or tag API
key) and what they may do."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request

from tessera.runtime import Instance
from tessera.services import tokens


def get_instance(request: Request) -> Instance:
    inst: Instance = request.app.state.instance
    return inst


@dataclass(frozen=True)
class Caller:
    """Who sent the request: a stored token (``token_id``) or the server's local admin token (None)."""

    token_id: int | None
    name: str
    scopes: list[str]

    @property
    def admin(self) -> bool:
        return tokens.ADMIN_SCOPE in self.scopes


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, {"error": "unauthorized", "message": message}, headers={"WWW-Authenticate": "Bearer"})


def caller(request: Request, *, what: str = "admin token") -> Caller:
    """The caller of ``Authorization: Bearer <token>``; 401 when the token is missing, unknown or revoked."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized(f"send Authorization: Bearer <{what}>")
    local = getattr(request.app.state, "local_token", None)
    if local is not None and secrets.compare_digest(token, local):
        return Caller(None, "local", [tokens.ADMIN_SCOPE])
    inst = get_instance(request)
    with inst.operational.session() as s:
        info = tokens.lookup_token(session=s, token=token)
    if info is None:
        raise _unauthorized("unknown or revoked token")
    return Caller(info.id, info.name, info.scopes)


def require_admin(request: Request) -> list[str]:
    """The management API needs ``Authorization: Bearer <admin token>`` (``tessera token create``);
    a token without the ``admin`` scope (a tag API key) is refused with 403."""
    who = caller(request)
    if not who.admin:
        raise HTTPException(
            403,
            {"error": "forbidden", "message": f"token {who.name!r} has scopes {', '.join(who.scopes) or 'none'}, "
             "not admin: the management API (/v1/admin/…) needs an admin token (tessera token create)"},
        )  # fmt: skip
    return who.scopes


def require_tag_key(request: Request) -> Caller:
    """The open tag API (/v1/tags/…) needs a tag API key (``tags:read:…`` / ``tags:write:…`` scopes)
    or an admin token (every category)."""
    who = caller(request, what="tag API key")
    if not who.admin and not any(s.startswith((tokens.TAG_READ, tokens.TAG_WRITE)) for s in who.scopes):
        raise HTTPException(
            403, {"error": "forbidden", "message": f"token {who.name!r} is not a tag API key (it has no tags:… scope)"}
        )
    return who


def load_acknowledged(request: Request) -> None:
    """Load what the server has acknowledged, so the request sees every message so far."""
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is not None:
        pipeline.loader.flush(timeout=120)
