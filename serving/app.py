"""The online scoring API: Open Inference Protocol V2 and the simple JSON endpoints, on FastAPI.

Bodies are read by hand, bounded by ``serve_max_body_bytes`` and parsed as strict JSON (orjson:
NaN and Infinity literals are refused, as on the stream), so bad input always gets a 4xx naming
the problem and never a 500. Every scoring route goes through the one dynamic batcher, which takes
the champion once per batch, so a promotion lands between batches, never inside one. The runtime
raises scorepipe errors; the exception handler here is the only place they become statuses.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import time
import uuid
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Route

from integrations.stores import model_stores
from monitoring.live_drift import LiveDriftPublisher
from monitoring.metrics import ScoringMetrics
from monitoring.payload import Exchange, PayloadLog, logged_endpoint
from scoring import Scorer
from scoring.canary_models import CanaryModels, follow_canary
from scoring.label_files import label_file_path, write_label_file
from scoring.layout import EVENT_ID, SHADOW_DIR
from scoring.live_window import LiveWindow
from scoring.records import short
from scoring.storage import as_location
from scoring.watcher import ModelWatcher, model_origin, watch_models
from serving.batcher import DynamicBatcher
from serving.errors import ApiError, RequestError, UnknownModelError, status_of
from serving.heap import freeze_heap, refreeze_after_reload
from serving.rate_limit import RateLimiter, Refusal, caller_of
from serving.runtime import Runtime
from serving.settings import ServeSettings
from serving.shadow import HttpShadow

log = logging.getLogger("scorepipe.serve")
OPEN_PATHS = frozenset({"/health", "/v2/health/live", "/v2/health/ready", "/metrics"})
MODEL_VERSION_HEADER = "x-model-version"
MODEL_ARM_HEADER = "x-model-arm"


def create_app(
    settings: ServeSettings,
    models: ModelWatcher,
    metrics: ScoringMetrics | None = None,
    canary: CanaryModels | None = None,
    window: LiveWindow | None = None,
    shadow: HttpShadow | None = None,
    payload_log: PayloadLog | None = None,
) -> FastAPI:
    """The API over ``models`` (a started watcher), a canary follower, a live window, a shadow, a payload log.

    The caller owns them.
    """
    metrics = metrics or ScoringMetrics()
    runtime = Runtime(settings, models, metrics, canary, window, shadow)
    batcher = DynamicBatcher(runtime, max_records=settings.serve_max_batch_records)
    app = FastAPI(title="scorepipe", version=_package_version(), docs_url="/docs", redoc_url=None)
    app.state.runtime = runtime
    app.state.batcher = batcher
    app.router.on_shutdown.append(batcher.stop)
    if runtime.live_drift is not None:
        drift = LiveDriftPublisher(runtime.live_drift, metrics, interval=settings.live_drift_interval_seconds)
        app.state.live_drift = drift
        app.router.on_startup.append(drift.start)
        app.router.on_shutdown.append(drift.stop)
    name = settings.serve_model_name
    key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    limiter = None
    if settings.serve_rate_limit:
        limiter = RateLimiter(settings.serve_rate_limit, settings.serve_rate_limit_storage or "memory://")
    app.add_middleware(GuardAndMeasure, key=key, metrics=metrics, limiter=limiter, payload_log=payload_log)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=status_of(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    # -- health, metrics -----------------------------------------------------------------------

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    def health() -> JSONResponse:
        current = models.version
        status = 200 if current is not None else 503
        body: dict[str, Any] = {"status": "ok" if current else "no model", "model_version": current}
        if models.last_error:  # the old version serves on: say which reload was refused, and why
            body["reload_refused"] = {"count": models.failures, "last": models.last_error}
        return JSONResponse(body, status)

    @app.get("/v2/health/live")
    def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> JSONResponse:
        ok = models.version is not None
        body: dict[str, Any] = {"ready": ok}
        if models.last_error:
            body["reload_refused"] = {"count": models.failures, "last": models.last_error}
        return JSONResponse(body, status_code=200 if ok else 503)

    # -- Open Inference Protocol V2 ------------------------------------------------------------

    @app.get("/v2")
    def server_metadata() -> dict:
        return {"name": "scorepipe", "version": _package_version(), "extensions": []}

    def model_metadata(model_name: str, model_version: str | None) -> JSONResponse:
        scorer = _model(runtime, name, model_name, model_version)
        return _versioned(scorer, _metadata(name, scorer, runtime.versions()))

    def model_ready(model_name: str, model_version: str | None) -> JSONResponse:
        scorer = _model(runtime, name, model_name, model_version)
        return _versioned(scorer, {"name": name, "ready": True})

    async def infer(request: Request, model_name: str, model_version: str | None) -> JSONResponse:
        payload = await _json_body(request, settings, status=400)
        if not isinstance(payload, dict):
            raise ApiError(400, "an inference request is a JSON object with `inputs`")
        inputs = payload.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
            raise ApiError(400, "`inputs` must be a list of tensors {name, shape, datatype, data}")
        wanted = _requested_outputs(payload.get("outputs"))
        _check_name(name, model_name)
        key = _request_key(request, settings) if model_version is None and runtime.split().active else None
        submitted = batcher.submit_infer(inputs, model_version, key.encode() if key else None)
        scorer, scored, arm = await asyncio.wrap_future(submitted)
        outputs = _outputs(scorer, scored, wanted)
        body: dict[str, Any] = {
            "model_name": name,
            "model_version": str(scorer.version),
            "id": str(payload.get("id")) if payload.get("id") is not None else "",
            "parameters": {"content_type": "pd", "arm": arm, **({"canary_key": key} if key else {})},
            "outputs": outputs,
        }
        return _versioned(scorer, body, arm=arm)

    app.get("/v2/models/{model_name}")(lambda model_name: model_metadata(model_name, None))
    app.get("/v2/models/{model_name}/versions/{model_version}")(model_metadata)
    app.get("/v2/models/{model_name}/ready")(lambda model_name: model_ready(model_name, None))
    app.get("/v2/models/{model_name}/versions/{model_version}/ready")(model_ready)

    @app.post("/v2/models/{model_name}/infer")
    async def infer_latest(request: Request, model_name: str) -> JSONResponse:
        return await infer(request, model_name, None)

    @app.post("/v2/models/{model_name}/versions/{model_version}/infer")
    async def infer_version(request: Request, model_name: str, model_version: str) -> JSONResponse:
        return await infer(request, model_name, model_version)

    # -- the simple JSON API -------------------------------------------------------------------

    @app.get("/model_info")
    def model_info() -> JSONResponse:
        scorer = runtime.scorer()
        info = runtime.registry.info(scorer.version)
        bundle = scorer.bundle
        return _versioned(
            scorer,
            {
                "name": name,
                "version": scorer.version,
                "aliases": list(info.aliases),
                "following": models.ref if models.follows else None,
                "classes": [_plain(c) for c in bundle.classes],
                "schema": bundle.schema.model_dump(mode="json"),
                "metrics": info.metrics,
                "sha256": info.files,
                "origin": info.origin,
                "created_at": info.created_at,
                "small_frame_shortcut": scorer.small_frame_shortcut,
                "compiled_trees": {"active": scorer.compiled_trees, "reason": scorer.compiled_trees_reason},
            },
        )

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:  # served by the plain route below; here for /docs
        record = await _json_body(request, settings, status=422)
        if not isinstance(record, dict):
            raise ApiError(422, "/predict takes one record, a JSON object (use /predict_batch for a list)")
        records, keys = _arm_keys(request, settings, [record], runtime.split().active)
        scorer, [result] = await _scored(batcher, records, keys)
        if result.error is not None:
            raise ApiError(422, "the record cannot be scored", result.error.split("; "))
        scores = result.scores or {}
        if keys:
            scores["canary_key"] = keys[0].decode()
        return _versioned(scorer, scores, arm=scores.get("arm"))

    # The busiest route, matched first and served as a plain Starlette route: FastAPI's parameter
    # solving and the walk past every other route are a tenth of a lone request's time in the server.
    app.router.routes.insert(0, _PlainRoute("/predict", predict, methods=["POST"], include_in_schema=False))

    @app.post("/predict_batch")
    async def predict_batch(request: Request) -> JSONResponse:
        payload = await _json_body(request, settings, status=422)
        records = payload.get("records") if isinstance(payload, dict) else payload
        if not isinstance(records, list):
            raise ApiError(422, '/predict_batch takes a JSON array of records, or {"records": [...]}')
        if not records:
            raise ApiError(422, "the batch is empty")
        limit = settings.serve_max_batch_records
        if len(records) > limit:
            raise ApiError(413, f"{len(records)} records is more than the limit of {limit} per request")
        records, keys = _arm_keys(request, settings, records, runtime.split().active)
        scorer, results = await _scored(batcher, records, keys)
        if keys:
            for result, key in zip(results, keys, strict=True):
                if result.scores is not None:
                    result.scores["canary_key"] = key.decode()
        rejected = [r for r in results if r.error is not None]
        if len(rejected) == len(results):
            raise ApiError(422, "no record can be scored", [f"record {r.index}: {r.error}" for r in rejected])
        body = {
            "model_version": scorer.version,
            "scored": len(results) - len(rejected),
            "rejected": len(rejected),
            "results": [
                {"index": r.index, **r.scores} if r.scores is not None else {"index": r.index, "error": r.error}
                for r in results
            ],
        }
        arms = {r.scores.get("arm") for r in results if r.scores is not None}
        return _versioned(scorer, body, arm=arms.pop() if len(arms) == 1 else None)  # the header only for one arm

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        """Labels for earlier predictions, by their ``prediction_id``: all stored as one label file, or none."""
        payload = await _json_body(request, settings, status=422)
        items = payload.get("feedback") if isinstance(payload, dict) and "feedback" in payload else payload
        items = items if isinstance(items, list) else [items]
        if not items:
            raise ApiError(422, "no feedback given")
        if len(items) > settings.serve_max_batch_records:
            raise ApiError(413, f"{len(items)} labels is more than the limit of {settings.serve_max_batch_records}")
        classes = {str(_plain(c)): _plain(c) for c in runtime.scorer().bundle.classes}
        rows, problems = feedback_rows(items, classes)
        if problems:
            raise ApiError(422, f"no feedback was stored: {len(problems)} of {len(items)} item(s) are wrong", problems)
        path = await run_in_threadpool(
            write_label_file, rows, label_file_path(as_location(settings.labels_dir), "feedback")
        )
        metrics.feedback.inc(len(rows))
        return FastJSON({"stored": len(rows), "file": str(path)})

    return app


def feedback_rows(items: list[Any], classes: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Label rows for the label store, or every problem, each naming its item, field and value."""
    rows, problems = [], []
    now = datetime.now(UTC)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"item {i}: expected an object with prediction_id and label, got {short(item)}")
            continue
        prediction_id, label = item.get("prediction_id", item.get("id")), item.get("label")
        if not isinstance(prediction_id, str) or not prediction_id.strip() or len(prediction_id) > 200:
            problems.append(f"item {i}: prediction_id must be the id a prediction returned, got {short(prediction_id)}")
        if label is None or str(_label_text(label)) not in classes:
            problems.append(f"item {i}: label {short(label)} is not one of the model's classes {list(classes)}")
        if not problems or not problems[-1].startswith(f"item {i}:"):
            rows.append({EVENT_ID: prediction_id, "label": str(_label_text(label)), "label_time": now})
    return rows, problems


def _label_text(value: Any) -> Any:
    return int(value) if isinstance(value, bool) or (isinstance(value, float) and value.is_integer()) else value


def build_app(
    settings: ServeSettings,
    model: str = "champion",
    *,
    payload_log: Callable[[ScoringMetrics], PayloadLog] | None = None,
) -> tuple[FastAPI, ModelWatcher]:
    """A watcher following ``model`` (hot reload, hash-checked) and the app over it.

    ``payload_log`` builds where scoring exchanges are logged (the entry point composes it; it is
    closed, sending what is left, when the server stops).
    """
    metrics = ScoringMetrics()
    models, challenger = watch_models(
        settings,
        model,
        shadow=settings.serve_shadow,
        listeners=[metrics.on_reload, refreeze_after_reload],
        stores=model_stores(),
    )
    serving = models.current()
    metrics.set_model(
        models.ref,
        models.version,
        small_frame_shortcut=serving.small_frame_shortcut if serving else None,
        compiled_trees=serving.compiled_trees if serving else None,
        origin=model_origin(serving.bundle.info) if serving else None,
    )
    canary = follow_canary(settings, models)
    window = None
    if settings.serve_live_window:
        window = LiveWindow(
            settings.live_dir,
            roll_rows=settings.live_window_rows,
            roll_seconds=settings.live_window_seconds,
            name=f"serve-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        )
    shadow = None
    if challenger is not None:
        metrics.set_model(challenger.ref, challenger.version)
        shadow_window = None
        if settings.serve_live_window:
            shadow_window = LiveWindow(
                settings.live_dir / SHADOW_DIR,
                roll_rows=settings.live_window_rows,
                roll_seconds=settings.live_window_seconds,
                name=f"serve-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            )
        shadow = HttpShadow(challenger, metrics, shadow_window)
    exchanges = payload_log(metrics) if payload_log is not None else None
    app = create_app(settings, models, metrics, canary, window, shadow, exchanges)
    if exchanges is not None:
        app.router.on_shutdown.append(exchanges.close)
    if canary is not None:
        app.router.on_shutdown.append(canary.stop)
    if window is not None:
        app.router.on_shutdown.append(window.close)  # after the batcher stopped: no row is lost on a clean stop
    if shadow is not None:
        app.router.on_shutdown.append(shadow.drain)
    app.router.on_startup.append(freeze_heap)  # last: everything loaded at start is alive for good
    app.router.on_shutdown.append(gc.unfreeze)  # an app stopped in a process that goes on leaves no frozen heap
    return app, models


# -- helpers ---------------------------------------------------------------------------------------


class GuardAndMeasure:
    """Plain ASGI middleware: API-key check, then request count and time by route, status and version.

    Written against ASGI rather than with ``@app.middleware("http")``, whose extra task and response
    streaming cost a measurable share of a one-record request.
    """

    def __init__(
        self,
        app: Any,
        *,
        key: bytes | None,
        metrics: ScoringMetrics,
        limiter: RateLimiter | None = None,
        payload_log: PayloadLog | None = None,
    ) -> None:
        self.app = app
        self.key = key
        self.metrics = metrics
        self.limiter = limiter
        self.payload_log = payload_log

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "version": "", "arm": ""}
        logging_payload = self.payload_log is not None and scope["method"] == "POST"
        asked, answered = bytearray(), bytearray()

        async def watched(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name == MODEL_VERSION_HEADER.encode():
                        seen["version"] = value.decode()
                    elif name == MODEL_ARM_HEADER.encode():
                        seen["arm"] = value.decode()
            elif logging_payload and message["type"] == "http.response.body":
                answered.extend(message.get("body", b""))
            await send(message)

        async def heard() -> MutableMapping[str, Any]:
            message: MutableMapping[str, Any] = await receive()
            if message["type"] == "http.request":
                asked.extend(message.get("body", b""))
            return message

        reached_app = False
        if self.key is not None and scope["path"] not in OPEN_PATHS and not _authorised(Request(scope), self.key):
            denied = JSONResponse(
                {"error": "missing or wrong API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await denied(scope, receive, watched)
        elif (
            self.limiter is not None and scope["path"] not in OPEN_PATHS and (refused := await self._over_limit(scope))
        ):
            self.metrics.rate_limited.inc()
            limited = JSONResponse(
                {"error": f"rate limit {refused.limit} exceeded; retry after {refused.retry_after} s"},
                status_code=429,
                headers={"Retry-After": str(refused.retry_after)},
            )
            await limited(scope, receive, watched)
        else:
            await self.app(scope, heard if logging_payload else receive, watched)
            reached_app = True  # a request refused before the app (key, rate) is never logged
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        seconds = time.perf_counter() - started
        self.metrics.http_requests.labels(endpoint, str(seen["status"]), seen["version"]).inc()
        self.metrics.http_duration.labels(endpoint).observe(seconds)
        if reached_app and logging_payload and logged_endpoint(endpoint):
            assert self.payload_log is not None
            self.payload_log.offer(
                Exchange(
                    request_id=uuid.uuid4().hex,
                    time=datetime.fromtimestamp(time.time() - seconds, UTC).isoformat(),
                    method=scope["method"],
                    path=scope["path"],
                    status=int(seen["status"]),
                    model_version=str(seen["version"]),
                    arm=str(seen["arm"]),
                    seconds=seconds,
                    request=bytes(asked),
                    response=bytes(answered),
                )
            )

    async def _over_limit(self, scope: MutableMapping[str, Any]) -> Refusal | None:
        """Whether this request is over its caller's limit: the API key it proved (else its address)."""
        assert self.limiter is not None
        client = scope.get("client")
        caller = caller_of(self.key.decode() if self.key is not None else None, client[0] if client else None)
        if self.limiter.blocking:
            return await run_in_threadpool(self.limiter.refuse, caller)
        return self.limiter.refuse(caller)


async def _scored(batcher: DynamicBatcher, records: list[Any], keys: list[bytes] | None) -> Any:
    """JSON records' ``(scorer, results)``: scored at once if the batcher is free for them, else batched."""
    done = batcher.score_now(records, keys)
    return done.result() if done is not None else await asyncio.wrap_future(batcher.submit(records, keys))


class _PlainRoute(Route):
    """A Starlette route that names itself in the scope as FastAPI's do: metrics and logs label requests by it."""

    def matches(self, scope: MutableMapping[str, Any]) -> tuple[Match, MutableMapping[str, Any]]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child


def _authorised(request: Request, key: bytes) -> bool:
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), key)


async def _json_body(request: Request, settings: ServeSettings, *, status: int) -> Any:
    """The request body as strict JSON, read no further than the size limit (413 past it)."""
    limit = settings.serve_max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise ApiError(status, "empty request body: send JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(status, f"invalid JSON: {exc}") from exc


def _check_name(name: str, model_name: str) -> None:
    if model_name != name:
        raise UnknownModelError(f"unknown model {model_name!r}: this server serves {name!r}")


def _model(runtime: Runtime, name: str, model_name: str, model_version: str | None) -> Scorer:
    _check_name(name, model_name)
    return runtime.scorer(model_version)


def _metadata(name: str, scorer: Scorer, versions: list[str]) -> dict[str, Any]:
    """V2 model metadata: one input per feature column, the outputs ``infer`` returns."""
    inputs = [
        {"name": f.name, "datatype": "FP64" if f.kind == "numeric" else "BYTES", "shape": [-1]}
        for f in scorer.bundle.schema.features
    ]
    return {
        "name": name,
        "versions": versions,
        "platform": "sklearn",
        "inputs": inputs,
        "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in _output_types(scorer).items()],
        "parameters": {"content_type": "pd", "model_version": str(scorer.version)},
    }


def _output_types(scorer: Scorer) -> dict[str, str]:
    integer = all(isinstance(_plain(c), int) for c in scorer.bundle.classes)
    types = {"prediction": "INT64" if integer else "BYTES"}
    types.update({c: "FP64" for c in scorer.proba_columns})
    types.update({"confidence": "FP64", "model_version": "INT64"})
    return types


def _requested_outputs(outputs: Any) -> list[str] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise ApiError(400, '`outputs` must be a list of {"name": ...}')
    return [o["name"] for o in outputs]


def _outputs(scorer: Scorer, scored: Any, wanted: list[str] | None) -> list[dict[str, Any]]:
    types = _output_types(scorer)
    if wanted is not None and (unknown := [n for n in wanted if n not in types]):
        raise ApiError(400, f"unknown outputs: {', '.join(unknown)} (outputs are {', '.join(types)})")
    n = len(scored)
    tensors = []
    for output_name, datatype in types.items():
        if wanted is not None and output_name not in wanted:
            continue
        column = scored[output_name]
        if datatype == "BYTES":
            data = column.astype(str).tolist()
        elif datatype == "INT64":
            data = column.astype("int64").tolist()
        else:
            data = column.astype("float64").tolist()
        tensors.append({"name": output_name, "shape": [n], "datatype": datatype, "data": data})
    return tensors


class FastJSON(JSONResponse):
    """JSON rendered by orjson: scoring answers are built per request, and the stdlib encoder is slower."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _versioned(scorer: Scorer, body: dict[str, Any], *, arm: str | None = None) -> JSONResponse:
    headers = {MODEL_VERSION_HEADER: str(scorer.version)}
    if arm is not None:
        headers[MODEL_ARM_HEADER] = arm
    return FastJSON(body, headers=headers)


def _request_key(request: Request, settings: ServeSettings) -> str:
    """The request's arm key: the configured header's value, else a random draw (reported in the response)."""
    return request.headers.get(settings.serve_canary_key_header) or uuid.uuid4().hex


def _arm_keys(
    request: Request, settings: ServeSettings, records: list[Any], active: bool
) -> tuple[list[Any], list[bytes] | None]:
    """The records to score and each one's arm key, while a canary takes traffic (else no keys).

    A record's key is its ``serve_canary_key_field`` (taken out: it is not a feature), else the
    request's header, else a random draw per record, reported in the response so a client can
    send it again to meet the same model.
    """
    field = settings.serve_canary_key_field
    if not active:
        if field is None:
            return records, None
        return [_without(r, field) for r in records], None
    header = request.headers.get(settings.serve_canary_key_header)
    keys, kept = [], []
    for record in records:
        own = record.get(field) if field is not None and isinstance(record, dict) else None
        keys.append(str(own if own is not None else header or uuid.uuid4().hex).encode())
        kept.append(_without(record, field) if field is not None else record)
    return kept, keys


def _without(record: Any, field: str) -> Any:
    return {k: v for k, v in record.items() if k != field} if isinstance(record, dict) and field in record else record


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _package_version() -> str:
    try:
        return version("scorepipe")
    except PackageNotFoundError:
        return "0+unknown"
