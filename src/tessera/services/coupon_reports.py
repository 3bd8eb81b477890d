"""Coupon reports (优惠券报表): per template and per campaign, how many were issued, used, lapsed,
voided and are still open, the redemption rate, the money taken off and the orders they were used on.

A coupon still ``issued`` whose ``valid_until`` has passed counts as expired even before the
expiry job marks it. Amounts are decimal strings in the template's currency; a campaign whose
templates use several currencies gets one line per currency.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from tessera.domain.coupons import CouponTemplate
from tessera.domain.money import from_minor
from tessera.runtime import Instance
from tessera.stores.models import CouponRow, CouponTemplateRow

C: Any = CouponRow.__table__
T: Any = CouponTemplateRow.__table__


class CouponFigures(BaseModel):
    """One line of the report: a template, or a campaign in one currency."""

    template: str | None = Field(description="the template (null on campaign lines)")
    template_name: str | None = None
    campaign: str | None
    currency: str
    issued: int
    redeemed: int
    expired: int
    void: int
    open: int = Field(description="issued, not used and not lapsed: still usable")
    redemption_rate: float | None = Field(description="redeemed / issued (null when nothing was issued)")
    discount: str = Field(description="money taken off by the coupons used")
    gmv: str = Field(description="order amounts (before the coupon) of the orders that used them")


class CouponReport(BaseModel):
    at: datetime
    templates: list[CouponFigures]
    campaigns: list[CouponFigures]


_COUNTS = ("issued", "redeemed", "expired", "void", "open")


def coupon_report(s: Session, now: datetime, *, template: str | None = None, campaign: str | None = None,
                  issued_from: datetime | None = None, issued_until: datetime | None = None) -> CouponReport:  # fmt: skip
    """Figures per template and per campaign, for coupons issued in [issued_from, issued_until)."""
    lapsed = case((and_(C.c.valid_until.is_not(None), C.c.valid_until <= now), 1), else_=0)
    query = select(
        C.c.template, C.c.campaign, C.c.status, lapsed.label("lapsed"), func.count(),
        func.coalesce(func.sum(C.c.discount), 0), func.coalesce(func.sum(C.c.order_amount), 0),
    ).group_by(C.c.template, C.c.campaign, C.c.status, lapsed)  # fmt: skip
    if template is not None:
        query = query.where(C.c.template == template)
    if campaign is not None:
        query = query.where(C.c.campaign == campaign)
    if issued_from is not None:
        query = query.where(C.c.issued_at >= issued_from)
    if issued_until is not None:
        query = query.where(C.c.issued_at < issued_until)
    templates = {k: CouponTemplate.model_validate(b) for k, b in s.execute(select(T.c.key, T.c.body))}
    by_template: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys((*_COUNTS, "discount", "gmv"), 0))
    by_campaign: dict[tuple[str | None, str], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys((*_COUNTS, "discount", "gmv"), 0)
    )
    for tpl, camp, status, is_lapsed, n, discount, gmv in s.execute(query):
        currency = templates[tpl].currency if tpl in templates else "CNY"
        for acc in (by_template[tpl], by_campaign[(camp, currency)]):
            acc["issued"] += int(n)
            if status == "issued":
                acc["expired" if is_lapsed else "open"] += int(n)
            else:
                acc[status] += int(n)
            acc["discount"] += int(discount)
            acc["gmv"] += int(gmv)
    if template is not None and template in templates:
        by_template.setdefault(template, dict.fromkeys((*_COUNTS, "discount", "gmv"), 0))

    def line(tpl: str | None, camp: str | None, currency: str, acc: dict[str, int]) -> CouponFigures:
        t = templates.get(tpl) if tpl else None
        return CouponFigures(
            template=tpl, template_name=t.name if t else None, campaign=camp, currency=currency,
            **{k: acc[k] for k in _COUNTS},
            redemption_rate=round(acc["redeemed"] / acc["issued"], 4) if acc["issued"] else None,
            discount=str(from_minor(acc["discount"], currency)), gmv=str(from_minor(acc["gmv"], currency)),
        )  # fmt: skip

    return CouponReport(
        at=now,
        templates=[
            line(
                k,
                templates[k].campaign if k in templates else None,
                templates[k].currency if k in templates else "CNY",
                v,
            )
            for k, v in sorted(by_template.items())
        ],  # fmt: skip
        campaigns=[
            line(None, camp, cur, v)
            for (camp, cur), v in sorted(
                by_campaign.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1])
            )
        ],  # fmt: skip
    )


def report(inst: Instance, *, template: str | None = None, campaign: str | None = None,
           issued_from: datetime | None = None, issued_until: datetime | None = None) -> CouponReport:  # fmt: skip
    with inst.operational.session() as s:
        return coupon_report(s, inst.clock.now(), template=template, campaign=campaign, issued_from=issued_from,
                             issued_until=issued_until)  # fmt: skip
