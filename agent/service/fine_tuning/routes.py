"""The fine-tuning API on the server: OpenAI's `/v1/files` and `/v1/fine_tuning/jobs`
routes, added to `ftagent serve`'s app as an extension (`tools.serve.routes.Extension`),
so the serving tools know nothing of jobs, and the job manager is started and stopped with
the app. A finished job's adapter is added to the served models (`ServedModels`), so
`ft:...` answers at once, without a restart.

Uploads are streamed to disk under a generated id, up to the size limit
(`tools.serve.uploads`); the file is stored as it came and never run or changed.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI, Query, Request
from ftagent.agent.service.fine_tuning import shapes
from ftagent.agent.service.fine_tuning.checkpoints import job_checkpoints
from ftagent.agent.service.fine_tuning.events import job_events
from ftagent.agent.service.fine_tuning.manager import JobManager, RequestError
from ftagent.agent.service.fine_tuning.store import Store
from ftagent.tools.serve.schemas import OpenAIError
from ftagent.tools.serve.served import ServedModels
from ftagent.tools.serve.uploads import UploadError, receive_upload
from starlette.responses import FileResponse

DEFAULT_MAX_UPLOAD_MB = 512
FILENAME_LIMIT = 255


def fine_tuning_extension(root: str | Path, base_model: str, policy: Path | None = None,
                          max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB):
    """The extension `ftagent serve --fine-tuning` passes to `run_server`: jobs and files
    under `root`, training `base_model`, gates decided by `policy` (None: approve a gate
    whose automatic check passed)."""

    def extend(app: FastAPI, served: ServedModels) -> JobManager:
        store = Store(root)
        manager = JobManager(store, base_model, served.base_id, served.add_adapter, policy)
        add_file_routes(app, store, max_upload_mb * 2**20)
        add_job_routes(app, manager)
        return manager

    return extend


def _refused(exc: RequestError) -> OpenAIError:
    return OpenAIError(exc.status, str(exc), param=exc.param, code=exc.code)


def add_file_routes(app: FastAPI, store: Store, max_bytes: int) -> None:
    def existing(file_id: str) -> dict:
        doc = store.file(file_id)
        if doc is None:
            raise OpenAIError(404, f"No such File object: {file_id}", param="id",
                              code="file_not_found")
        return doc

    @app.post("/v1/files")
    async def upload(request: Request):
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes + 2**16:  # the form around it
            raise OpenAIError(413, f"The file is larger than this server's limit of "
                              f"{max_bytes // 2**20} MB.", param="file", code="file_too_large")
        file_id = store.new_file_id()
        path = store.file_path(file_id)
        try:
            up = await receive_upload(request.stream(), request.headers.get("content-type", ""),
                                      path, max_bytes)
        except UploadError as exc:
            raise OpenAIError(exc.status, str(exc), param="file") from None
        purpose = up.fields.get("purpose", "")
        problem = ("purpose: this server takes files for fine-tuning only (purpose "
                   f"`fine-tune`), got `{purpose}`" if purpose != "fine-tune"
                   else "file: the file is empty" if up.bytes == 0 else "")
        if problem:
            path.unlink(missing_ok=True)
            raise OpenAIError(400, problem, param=problem.split(":")[0])
        path.chmod(0o600)  # data, never executable
        doc = store.add_file({"id": file_id, "created_at": int(time.time()),
                              "bytes": up.bytes, "purpose": purpose,
                              "filename": (up.filename or "upload")[:FILENAME_LIMIT]})
        return shapes.file_object(doc)

    @app.get("/v1/files")
    def list_files(purpose: str | None = None, after: str | None = None,
                   limit: int = Query(10000, ge=1, le=10000), order: str = "desc"):
        docs = [shapes.file_object(d) for d in store.files(purpose)]
        return shapes.page(docs if order == "desc" else docs[::-1], after, limit)

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str):
        return shapes.file_object(existing(file_id))

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str):
        existing(file_id)
        return FileResponse(store.file_path(file_id), media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str):
        existing(file_id)
        store.delete_file(file_id)
        return {"id": file_id, "object": "file", "deleted": True}


def add_job_routes(app: FastAPI, manager: JobManager) -> None:
    def job(job_id: str) -> dict:
        try:
            return manager.job(job_id)
        except RequestError as exc:
            raise _refused(exc) from None

    @app.post("/v1/fine_tuning/jobs")
    def create_job(req: shapes.JobRequest):
        try:
            return shapes.job_object(manager.create(req))
        except RequestError as exc:
            raise _refused(exc) from None

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=100)):
        docs = [shapes.job_object(d) for d in manager.store.jobs()]
        return shapes.page(docs, after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str):
        return shapes.job_object(job(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str):
        try:
            return shapes.job_object(manager.cancel(job_id))
        except RequestError as exc:
            raise _refused(exc) from None

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def list_events(job_id: str, after: str | None = None,
                    limit: int = Query(20, ge=1, le=1000)):
        return shapes.page(job_events(manager.store, job(job_id)), after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def list_checkpoints(job_id: str, after: str | None = None,
                         limit: int = Query(10, ge=1, le=100)):
        return shapes.page(job_checkpoints(job(job_id)), after, limit)
