"""Management API of push destinations (推送目的地): signed webhooks audiences are pushed to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tessera.api.deps import get_instance, require_admin
from tessera.runtime import Instance
from tessera.services import deliveries
from tessera.services.deliveries import DeadLetter, DeliveryError, Destination

router = APIRouter(prefix="/v1/admin", tags=["destinations"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


class DestinationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL receiving signed POSTs")


class DestinationCreated(BaseModel):
    destination: Destination
    secret: str = Field(description="whsec_… signing secret; shown once — verify webhook-signature with it")


@router.post("/destinations", status_code=201, response_model=DestinationCreated)
def create(instance: InstanceDep, body: DestinationIn) -> DestinationCreated:
    try:
        with instance.operational.session() as s:
            dest, secret = deliveries.create_destination(
                session=s, name=body.name, url=body.url, now=instance.clock.now()
            )
    except DeliveryError as e:
        raise HTTPException(422, {"error": "invalid_destination", "field": e.field, "message": e.message}) from None
    return DestinationCreated(destination=dest, secret=secret)


@router.get("/destinations", response_model=list[Destination])
def list_all(instance: InstanceDep) -> list[Destination]:
    with instance.operational.session() as s:
        return deliveries.list_destinations(session=s)


@router.delete("/destinations/{destination_id}", status_code=204)
def delete(instance: InstanceDep, destination_id: str) -> Response:
    with instance.operational.session() as s:
        if not deliveries.delete_destination(session=s, destination_id=destination_id):
            raise HTTPException(
                404, {"error": "not_found", "field": "destination", "message": f"no destination {destination_id!r}"}
            )
    return Response(status_code=204)


@router.get("/delivery-dead-letters", response_model=list[DeadLetter])
def dead_letters(
    instance: InstanceDep,
    reference: Annotated[str | None, Query(description="a push id, …")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[DeadLetter]:
    """Outbound payloads given up on (after retries, or refused by the receiver)."""
    with instance.operational.session() as s:
        return deliveries.list_dead_letters(session=s, reference=reference, limit=limit)
