"""Model tags (模型标签): the registry of models that compute tag values.

A model tag names a model and its parameters (``{"kind": "model", "model": {"name": "rfm",
"params": {"output": "group"}}}``). Each model lives in a module of this package and registers a
:class:`ModelSpec`: its parameters (a pydantic model, ``extra="forbid"``), the value type and enum
values the tag must have, and the function that computes values. Every model's ``method`` text
says how values are computed; docs/tag_models.md is the long form.

A compute function fills the run's target table (see :class:`tessera.services.tag_runs.ComputeContext`)
with ``(tag_key, profile_idx, value)`` rows for every tag it is given — all of one model, so that
several outputs of one model (RFM's R, F, M and group) share one pass over the data.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tessera.domain.tags import ModelConfig

if TYPE_CHECKING:
    import duckdb

    from tessera.domain.tags import Tag
    from tessera.services.tag_runs import ComputeContext

#: compute(cur, [(tag, its validated params)], ctx) -> details recorded on the run (e.g. {"auc": 0.74})
Compute = Callable[["duckdb.DuckDBPyConnection", Sequence[tuple["Tag", Any]], "ComputeContext"], dict[str, Any]]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    title_en: str
    method: str
    params: type[BaseModel]
    compute: Compute
    #: the tag's value type; and its enum values and multi flag, given the validated params
    value_type: Callable[[Any], str]
    enum_values: Callable[[Any], list[str] | None]
    multi: Callable[[Any], bool] = lambda _p: False
    #: whether the model can update from stored state (``incremental=True`` runs)
    incremental: bool = False


MODELS: dict[str, ModelSpec] = {}
_MODULES = ("rfm", "lifecycle", "clv", "propensity", "affinity", "sentiment")


def register(spec: ModelSpec) -> ModelSpec:
    MODELS[spec.name] = spec
    return spec


def _load() -> None:
    if len(MODELS) < len(_MODULES):
        for name in _MODULES:
            importlib.import_module(f"{__name__}.{name}")


def models() -> dict[str, ModelSpec]:
    _load()
    return MODELS


def model_params(config: ModelConfig) -> Any:
    """The validated parameters of a model config; raises ValueError naming ``model.params.<field>``."""
    spec = models().get(config.name)
    if spec is None:
        raise ValueError(f"model.name: no model {config.name!r} (one of {', '.join(sorted(models()))})")
    try:
        return spec.params.model_validate(config.params)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"model.params{'.' + where if where else ''}: {err['msg']}") from None


def shape_body(body: dict[str, Any]) -> dict[str, Any]:
    """A model tag's body with the fields its model decides (value type, enum values, multi) filled in.

    Omitted fields take the model's; given ones must agree (the ValueError names the field). Other
    kinds are returned unchanged."""
    if body.get("kind") != "model" or not isinstance(body.get("model"), dict):
        return body
    try:
        config = ModelConfig.model_validate(body["model"])
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise ValueError(f"model.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    params = model_params(config)
    spec = models()[config.name]
    want = {"value_type": spec.value_type(params), "enum_values": spec.enum_values(params), "multi": spec.multi(params)}
    for field, value in want.items():
        if field in body and body[field] != value:
            raise ValueError(f"{field}: model {spec.name} gives {value!r}")
    return {**body, **want, "model": config.model_dump(mode="json") | {"params": params.model_dump(mode="json")}}
