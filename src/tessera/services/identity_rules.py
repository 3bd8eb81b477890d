"""The identity rules (识别规则), kept in the operational store and edited through the API or CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tessera.domain.identity import IdentityRules, default_rules
from tessera.stores.models import SettingDocRow
from tessera.stores.operational import OperationalStore

DOC_NAME = "identity_rules"


class RulesError(ValueError):
    """Rules that do not validate; ``field`` is the JSON path of the first problem."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_rules(body: Any) -> IdentityRules:
    """Validate a rules document; raises :class:`RulesError` naming the JSON path."""
    try:
        return IdentityRules.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"]) or "rules"
        raise RulesError(path, err["msg"]) from None


def get_rules(store: OperationalStore) -> IdentityRules:
    """The stored rules, or the defaults when none were saved."""
    with store.session() as s:
        row = s.get(SettingDocRow, DOC_NAME)
        return default_rules() if row is None else IdentityRules.model_validate(row.body)


def rules_version(store: OperationalStore) -> int:
    with store.session() as s:
        row = s.get(SettingDocRow, DOC_NAME)
        return 0 if row is None else row.version


def save_rules(store: OperationalStore, rules: IdentityRules, *, now: datetime) -> int:
    """Store ``rules``; returns the new version. Takes effect for what is linked next; run a
    rebuild to apply them to what is already linked."""
    with store.session() as s:
        row = s.get(SettingDocRow, DOC_NAME)
        body = rules.model_dump(mode="json")
        if row is None:
            row = SettingDocRow(name=DOC_NAME, body=body, version=1, updated_at=now)
            s.add(row)
        else:
            row.body = body
            row.version += 1
            row.updated_at = now
        return row.version
