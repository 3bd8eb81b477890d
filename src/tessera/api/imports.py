"""File import over HTTP (``POST /v1/admin/imports/{kind}``) — filled in by the file-import module."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/admin/imports", tags=["imports"])
