"""What an import tells its caller: the report, and the two ways it can fail."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class ImportReport:
    """The outcome of one file import (also what a failed import got to).

    ``rows_read = rows_stored + rows_updated + rows_duplicate + rows_rejected`` for a stored import:
    *stored* rows are new, *updated* rows changed a row stored before, *duplicate* rows were stored
    already (or repeat a key earlier in the same file), *rejected* rows could not be parsed.
    """

    import_id: str
    kind: str
    file_name: str
    file_format: str
    rows_read: int = 0
    rows_stored: int = 0
    rows_updated: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    rejects_path: Path | None = None
    seconds: float = 0.0
    first_error: str | None = None
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        out["seconds"] = round(self.seconds, 3)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("rejects_path"):
            known["rejects_path"] = Path(known["rejects_path"])
        return cls(**known)


class ImportFailed(Exception):
    """The file cannot be imported as it is (bad rows beyond ``max_rejects``, wrong encoding, a
    required column missing …). Nothing of it was stored; ``report`` says what was found."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.message = message
        self.report = report


class ImportUsageError(ValueError):
    """The import was asked for wrongly (unknown kind, no such file, a bad mapping or option)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
