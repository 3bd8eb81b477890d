"""Preview a message template for one person (消息预览), exactly as the dispatcher would render it.

The person is found by ``profile_id`` or an identifier (``phone:138…``); the answer carries the
rendered subject / body / data in the chosen or the person's locale, the variables the person
lacks, the masked address, and why they would not get it (``no_address``, ``no_consent``,
``opted_out``) — the same guards as a real send.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera.runtime import Instance
from tessera.services.journeys import JourneyRequestError


class PreviewIn(BaseModel):
    """Render a message template for one person: by ``profile_id`` or ``identifier`` (TYPE:VALUE)."""

    model_config = ConfigDict(extra="forbid")
    template: dict[str, Any] = Field(description='{"subject": {"zh", "en"}, "body": {"zh", "en"}, "data": {…}}')
    profile_id: str | None = Field(default=None, max_length=100)
    identifier: str | None = Field(default=None, max_length=600, description="TYPE:VALUE, e.g. phone:13800138000")
    kind: Literal["email", "sms", "push", "wechat"] = Field(default="sms", description="email renders HTML-escaped")
    locale: str | None = Field(default=None, max_length=20, description="override the person's language (zh, en)")
    event: dict[str, Any] | None = Field(default=None, description="a sample triggering event (event.* variables)")
    coupon: dict[str, Any] | None = Field(default=None, description="a sample coupon (coupon.* variables)")

    @model_validator(mode="after")
    def _one_person(self) -> PreviewIn:
        if (self.profile_id is None) == (self.identifier is None):
            raise ValueError("give either profile_id or identifier")
        return self


class PreviewOut(BaseModel):
    profile_id: str
    kind: str
    locale: str = Field(description="the template locale used (zh / en)")
    subject: str | None
    body: str
    data: dict[str, Any]
    missing: list[str] = Field(description="variables the template used that this person does not have")
    address: str | None = Field(description="where the message would go, masked (None: no address of this kind)")
    blocked: str | None = Field(description="why this person would not get it: no_address, no_consent, opted_out")


def preview(*, inst: Instance, request: PreviewIn) -> PreviewOut:
    """Find the person, render as the dispatcher would (same variables), say whether they are reachable."""
    from tessera.domain.guards import consent_decision
    from tessera.services import channels, journey_reports, profile_view
    from tessera.services.identity_rules import get_rules
    from tessera.services.journey_dispatch import profile_vars
    from tessera.services.journey_facts import PersonFacts, load_people
    from tessera.services.profile_view import ProfileViewError
    from tessera.services.templates import MessageTemplate, TemplateError, check_template, render, variables_for

    body = request
    try:
        template = MessageTemplate.model_validate(body.template)
    except ValueError as e:
        raise JourneyRequestError(422, "template", str(e).splitlines()[-1].strip()) from None
    problems = [(f"template.{p}", m) for p, m in check_template(template)]
    if problems:
        raise JourneyRequestError(422, problems[0][0], problems[0][1], problems)
    cur = inst.analytic.cursor()
    try:
        ref = profile_view.find_profile(
            cur, rules=get_rules(inst.operational), identifier=body.identifier, profile_id=body.profile_id
        )
    except ProfileViewError as e:
        raise JourneyRequestError(422, e.field, e.message) from None
    finally:
        cur.close()
    if ref is None:
        field = "identifier" if body.identifier is not None else "profile_id"
        raise JourneyRequestError(404, field, f"no profile {body.identifier or body.profile_id}")
    person = load_people(inst, [ref.profile_idx], tags=True).get(ref.profile_idx) or PersonFacts(
        ref.profile_idx, ref.profile_id
    )
    unsubscribe = channels.unsubscribe_url(inst, person.profile_id, body.kind)
    variables = variables_for(
        profile=profile_vars(person), tags=person.tags, coupon=body.coupon, event=body.event,
        journey={"id": "preview", "name": "预览 preview", "node": "preview"},
        extra={"waited": {}, "timezone": person.timezone, "unsubscribe_url": unsubscribe},
    )  # fmt: skip
    try:
        rendered = render(template, locale=body.locale or person.locale, variables=variables, html=body.kind == "email")
    except TemplateError as e:
        raise JourneyRequestError(422, f"template.{e.field}", e.message) from None
    address = person.address(body.kind)
    with inst.operational.session() as s:
        opted = (person.profile_id, body.kind) in channels.opted_out(s, [person.profile_id])
    blocked = "no_address" if address is None else None
    blocked = blocked or consent_decision(
        person.traits, body.kind, opted_out=opted, require_opt_in=inst.settings.journeys.require_opt_in
    )
    return PreviewOut(
        profile_id=person.profile_id, kind=body.kind, locale=rendered.locale, subject=rendered.subject,
        body=rendered.body, data=rendered.data, missing=rendered.missing,
        address=journey_reports.mask_address(address, body.kind), blocked=blocked,
    )  # fmt: skip


__all__ = ["PreviewIn", "PreviewOut", "preview"]
