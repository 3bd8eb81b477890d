"""File import over HTTP: ``POST /v1/admin/imports/{kind}`` (multipart: ``file`` + ``options`` JSON).

This is how ``tessera import`` reaches a data dir while ``tessera serve`` holds it (DuckDB lets one
process open the file). The upload is written to a temp file in the data dir, imported in a worker
thread under the analytic store's write lock, and deleted. A bad file answers 422 with the report;
a bad request 400; the server keeps serving either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tessera.api.deps import get_instance, require_admin
from tessera.importing.kinds import KINDS, find_kind
from tessera.importing.mapping import mapping_from_data
from tessera.runtime import Instance
from tessera.services import sources as sources_service
from tessera.services.identity_rules import get_rules
from tessera.services.imports import ImportFailed, ImportReport, ImportUsageError, import_file
from tessera.services.pipeline import Pipeline

router = APIRouter(prefix="/v1/admin/imports", tags=["imports"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]
_CHUNK = 1 << 20


class ImportOptions(BaseModel):
    """The ``options`` form field (JSON). ``mapping``/``defaults`` as in a mapping file."""

    model_config = ConfigDict(extra="forbid")

    mapping: dict[str, str | None] = Field(default_factory=dict, description="file column → field (null drops it)")
    defaults: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    format: str | None = Field(None, description="csv, tsv, jsonl, json or parquet (default: from the file name)")
    encoding: str = "utf-8"
    timezone: str = Field("UTC", description="zone of times written without an offset")
    source: str | None = Field(None, description="name of the source the rows come from")
    source_id: int | None = None
    max_rejects: int = Field(0, ge=0)


class ImportReportOut(BaseModel):
    import_id: str
    kind: str
    file_name: str
    file_format: str
    status: str
    rows_read: int
    rows_stored: int
    rows_updated: int
    rows_duplicate: int
    rows_rejected: int
    rejects_path: str | None
    seconds: float
    first_error: str | None


def _bad_request(field: str, message: str, error: str = "invalid_request") -> HTTPException:
    return HTTPException(400, {"error": error, "field": field, "message": message})


def _options(raw: str) -> ImportOptions:
    try:
        data = json.loads(raw or "{}")
    except ValueError as exc:
        raise _bad_request("options", f"not JSON: {exc}") from None
    try:
        opts = ImportOptions.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _bad_request(f"options.{where}" if where else "options", first["msg"]) from None
    try:  # the same checks as a mapping file
        mapping_from_data({"columns": opts.mapping, "defaults": opts.defaults}, where="options")
    except ImportUsageError as exc:
        raise _bad_request("options", exc.message) from None
    return opts


def _source_id(instance: Instance, opts: ImportOptions) -> int | None:
    if opts.source is None:
        return opts.source_id
    with instance.operational.session() as s:
        src = sources_service.get_source_by_name(session=s, name=opts.source)
    if src is None:
        raise _bad_request("options.source", f"no source named {opts.source!r}", "unknown_source")
    return src.id


async def _save_upload(upload: UploadFile, folder: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=".import-upload-", suffix=suffix, dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(_CHUNK):
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _suffix(file_name: str) -> str:
    """The upload's extension(s), kept on the temp file (``.csv``; ``.jsonl.gz`` for a compressed one)."""
    suffixes = [x for x in Path(file_name.lower()).suffixes if x.isascii() and len(x) <= 10]
    return "".join(suffixes[-2:] if suffixes[-1:] == [".gz"] else suffixes[-1:]) or ".upload"


def _run(request: Request, instance: Instance, **kwargs: Any) -> ImportReport:
    store = instance.analytic
    with store.write_lock:
        report = import_file(store=store, rules=get_rules(instance.operational), **kwargs)
        # Event names inserted by the import: the loader keeps a name→id cache, refresh it before it
        # can write again (it needs the same lock), or its next insert of such a name would collide.
        pipeline: Pipeline | None = getattr(request.app.state, "pipeline", None)
        if report.kind == "events" and report.rows_stored and pipeline is not None:
            pipeline.loader.refresh_names()
    return report


@router.post(
    "/{kind}",
    response_model=ImportReportOut,
    responses={400: {"description": "bad request"}, 422: {"description": "the file cannot be imported"}},
)
async def import_upload(
    kind: str,
    request: Request,
    instance: InstanceDep,
    file: UploadFile,
    options: Annotated[str, Form(description="ImportOptions as JSON")] = "{}",
) -> ImportReportOut:
    """Import one file (CSV, JSON lines or Parquet) of ``kind``: all of it, or — when more rows are
    rejected than ``max_rejects`` — nothing (422, with the report and the first bad row)."""
    spec = find_kind(kind)
    if spec is None:
        raise HTTPException(
            404, {"error": "unknown_kind", "field": "kind", "message": f"use one of {', '.join(KINDS)}"}
        )  # fmt: skip
    opts = _options(options)
    source_id = _source_id(instance, opts)
    file_name = Path(file.filename or f"upload.{opts.format or 'csv'}").name
    tmp = await _save_upload(file, instance.data_dir.root, _suffix(file_name))
    try:
        report = await asyncio.to_thread(
            _run,
            request,
            instance,
            kind=spec.name,
            path=tmp,
            file_name=file_name,
            mapping=opts.mapping,
            defaults=opts.defaults,
            file_format=opts.format,
            encoding=opts.encoding,
            timezone=opts.timezone,
            source_id=source_id,
            max_rejects=opts.max_rejects,
            rejects_dir=instance.data_dir.rejects,
            work_dir=instance.data_dir.root,
            now=instance.clock.now(),
        )
    except ImportUsageError as exc:
        raise _bad_request(exc.field, exc.message) from None
    except ImportFailed as exc:
        raise HTTPException(
            422,
            {"error": "import_failed", "field": "file", "message": exc.message, "report": exc.report.to_dict()},
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return ImportReportOut(**report.to_dict())
