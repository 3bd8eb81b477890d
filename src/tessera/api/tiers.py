"""Management API of loyalty: tiers (会员等级). Filled in by the tiers part (docs/loyalty-design.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tessera.api.deps import require_admin

router = APIRouter(prefix="/v1/admin/loyalty", tags=["loyalty"], dependencies=[Depends(require_admin)])
