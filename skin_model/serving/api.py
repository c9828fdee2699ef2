"""The prediction API, as Starlette routes served beside the Streamlit pages (one process,
one port, one loaded model): ``GET /api/v1/version``, ``POST /api/v1/predict`` and
``GET /api/v1/openapi.json``.

Stateless: any replica answers any request. One upload cannot stall the server:

- **Admission, in two stages.** At most ``MAX_RECEIVING`` bodies are read at once; one more is
  refused (503, ``Retry-After``) before a byte of it is read. A body whose bytes have all arrived
  then takes one of ``MAX_PENDING`` prediction slots (503 when none is free). A client still
  sending therefore never holds a prediction slot: a slow or hostile upload cannot starve requests
  whose bodies are complete. The torch queue holds 64 calls (``torch_thread.MAX_WAITING``); the
  API keeps to a few of them, so that page sessions always find room.
- **Memory** stays bounded by bytes, not only by requests: the bodies held at once (being read,
  or read and waiting or predicting) total at most ``BODIES_HELD`` uploads at the limit; the
  chunk that would pass it ends its request with 503 (``Retry-After``). Small dermoscope
  uploads never meet it; a burst of big photos does (a 690 MB host). A body that declares over
  ``LARGE_BODY`` bytes also takes one of ``BODIES_HELD`` large-body slots, or is refused before a
  byte is read (one that declares no length, once that much has arrived): large bodies cut
  halfway by the budget left the server's heap ~50 MB higher after each burst
  (docs/performance.md), and slow clients with large bodies still leave the reading slots of
  small ones free. Each decoding must also fit in the server's memory budget
  (``serving.memory.MemoryBudget``), else 503.
- **Body deadline.** A body must keep arriving: no byte for ``BODY_IDLE_S``, or fewer than
  ``BODY_MIN_RATE`` bytes a second on average after ``BODY_GRACE_S`` (a phone on a poor link
  sends far more), and the request gets 408 and its reading slot is freed. A client that
  disconnects mid-body is logged as such, never as an internal error.
- **Bodies** stream into memory (never to disk), parsed as they arrive by python-multipart
  (Streamlit's and Starlette's own parser, ~40x faster than the standard library's email parser,
  and no second copy of the body), and are refused (413) as soon as they pass the limit.
- **Work** (decoding, then the model) runs on the API's own worker threads (``DECODERS`` at
  once: at most that many decoded images), never on the event loop, and never takes a thread
  from the pool that serves static files and pages; torch work runs on the torch thread.
- **Start-up.** The model loads once when the server starts (``streamlit_app.py``); until
  it has, ``predict`` and ``ready`` answer 503 with ``Retry-After`` and ``version`` reads the card.

Every refusal is ``{"error": code, "message": words}``. Needs Starlette and python-multipart
(installed with Streamlit); never imports Streamlit.
"""

from __future__ import annotations

import base64
import hmac
import io
import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from skin_model import __version__, vocab
from skin_model.config import settings
from skin_model.inference.inputs import (
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidInputError,
    MetadataError,
    NotAnImageError,
    TruncatedImageError,
    decoding_bytes,
)
from skin_model.inference.referral import CAM_TARGETS
from skin_model.inference.schema import ANSWER_FIELDS
from skin_model.inference.torch_thread import TorchThreadError
from skin_model.serving.memory import MemoryBudget, MemoryShort

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
TOKEN_ENV = "SKIN_MODEL_API_TOKEN"  # set: the prediction route needs "Authorization: Bearer <token>"
CORS_ENV = "SKIN_MODEL_API_CORS_ORIGINS"  # comma-separated origins allowed to call from a browser; unset: none
RETRY_AFTER_S = 5
MAX_PENDING = 4  # predictions in flight or waiting (bodies complete), across all API clients; more: 503
MAX_RECEIVING = 8  # bodies being read at once; more: 503 before a byte is read
BODY_IDLE_S = 10.0  # no byte of the body for this long: 408
BODY_GRACE_S = 5.0  # then the body must average at least BODY_MIN_RATE bytes a second...
BODY_MIN_RATE = 16_384  # ...(16 kB/s: a 2 MB dermoscope JPEG in ~2 min; a byte every 2 s is cut in ~5 s)
DECODERS = 2  # API requests decoding or predicting at once (each holds one decoded image)
BODIES_HELD = 3  # the bodies held in memory at once total at most this many uploads at the limit
LARGE_BODY = 1 << 20  # a body declaring more is read only in one of BODIES_HELD large-body slots
FIELDS = ("image", "age", "sex", "site", "prior", "answer_anyway")
YES = ("1", "true", "yes", "on")

# Input refusals: (status, code). The message is the exception's own English sentence.
REFUSALS: tuple[tuple[type[InvalidInputError], int, str], ...] = (
    (NotAnImageError, 415, "not_an_image"),
    (TruncatedImageError, 422, "truncated_image"),
    (ImageTooSmallError, 422, "image_too_small"),
    (ImageTooLargeError, 413, "image_too_large"),
    (MetadataError, 422, "invalid_metadata"),
    (InvalidInputError, 422, "invalid_input"),
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.code, "message": self.message}, self.status, headers=self.headers)


def _refusal(err: InvalidInputError) -> ApiError:
    for kind, status, code in REFUSALS:
        if isinstance(err, kind):
            return ApiError(status, code, str(err))
    raise AssertionError("unreachable: InvalidInputError is the last entry")


class FormReader:
    """A multipart/form-data body parsed as it streams in (python-multipart), in memory only:
    field name -> raw bytes. Refuses a part without a name (400), an unknown field and a field
    given twice (422) as soon as its headers arrive, and a body that cannot be read (400)."""

    def __init__(self, content_type: str):
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError(400, "bad_request", "The multipart body has no boundary.")
        self.fields: dict[str, bytes] = {}
        self._name: str | None = None
        self._chunks: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": lambda data, start, end: self._grow("_field", data[start:end]),
                "on_header_value": lambda data, start, end: self._grow("_value", data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": lambda data, start, end: self._chunks.append(data[start:end]),
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def _grow(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _part_begin(self) -> None:
        self._headers, self._chunks, self._name = {}, [], None

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("latin-1")
        if not name:
            raise ApiError(400, "bad_request", "A part of the form has no field name.")
        if name not in FIELDS:
            raise ApiError(422, "unknown_field", f"Unknown form field {name!r}; expected {', '.join(FIELDS)}.")
        if name in self.fields:
            raise ApiError(
                422, "repeated_field", f"The form field {name!r} is given twice; send one image per request."
            )
        self._name = name

    def _part_end(self) -> None:
        self.fields[self._name] = b"".join(self._chunks)
        self._chunks = []

    def _end(self) -> None:
        self._ended = True

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise ApiError(400, "bad_request", "The multipart body cannot be read.") from None

    def finish(self) -> dict[str, bytes]:
        self.feed(b"")
        if not self._ended:
            raise ApiError(400, "bad_request", "The multipart body ends before its closing boundary.")
        return self.fields


@dataclass(frozen=True)
class BodyDeadline:
    """How long a body may take: ``idle_s`` between bytes at most, and ``min_rate`` bytes a second
    on average once ``grace_s`` have passed."""

    idle_s: float = BODY_IDLE_S
    grace_s: float = BODY_GRACE_S
    min_rate: float = BODY_MIN_RATE

    def wait_for(self, started: float, received: int, now: float) -> float:
        """Seconds the next chunk may take, from the bytes received so far."""
        return min(self.idle_s, started + self.grace_s + received / self.min_rate - now)


async def read_form(
    request: Request,
    content_type: str,
    limit: int,
    deadline: BodyDeadline = BodyDeadline(),
    hold: Callable[[int], None] = lambda size: None,
) -> dict[str, bytes]:
    """The form of a multipart request, parsed while it streams in and refused (413) as soon as it
    is known to pass ``limit`` bytes: from its Content-Length before anything is read, else as soon
    as the bytes received pass it; 408 when it arrives too slowly (``deadline``). ``hold(n)`` is
    told of each chunk before it is kept (``BodyBudget``)."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "body_too_large", f"The request is larger than the {limit // 2**20} MB limit.")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "The Content-Length header is not a number.")
        if int(declared) > limit:
            raise too_large
    reader, size = FormReader(content_type), 0
    chunks = request.stream().__aiter__()
    started = anyio.current_time()
    while True:
        wait = deadline.wait_for(started, size, anyio.current_time())
        with anyio.move_on_after(max(wait, 0)) as scope:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
        if scope.cancelled_caught:
            raise ApiError(408, "body_too_slow", "The upload arrived too slowly and was stopped; please send it again.")
        size += len(chunk)
        if size > limit:
            raise too_large
        hold(len(chunk))
        reader.feed(chunk)
    return reader.finish()


class Admission:
    """How many predictions are in flight or waiting; all on the event loop, so a plain count."""

    def __init__(
        self, limit: int = MAX_PENDING, busy: str = "The model is busy with other requests; please try again shortly."
    ):
        self.limit, self.active, self.busy = limit, 0, busy

    def enter(self) -> None:
        self.check()
        self.active += 1

    def check(self) -> None:
        """Refuse now if no slot is free, without taking one."""
        if self.active >= self.limit:
            raise ApiError(503, "busy", self.busy, {"Retry-After": str(RETRY_AFTER_S)})

    def leave(self) -> None:
        self.active -= 1


class BodyBudget:
    """The bytes of request bodies held in memory at once, across requests; all on the event loop,
    so plain counts. ``holding()`` gives a request its ``hold(n)`` and gives its bytes back when the
    request is done."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    @contextmanager
    def holding(self):
        mine = 0

        def hold(size: int) -> None:
            nonlocal mine
            if self.held + size > self.limit:
                raise ApiError(
                    503,
                    "busy",
                    "The server is holding too many large uploads; please try again shortly.",
                    {"Retry-After": str(RETRY_AFTER_S)},
                )
            self.held += size
            mine += size

        try:
            yield hold
        finally:
            self.held -= mine


def _text(fields: dict[str, bytes], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_metadata", f"The field {name!r} is not UTF-8 text.") from None
    return text or None


def prediction_json(pred, explanation=None) -> dict:
    """A prediction as the API answers it: ``Prediction.as_dict`` (the JSON download's content, the
    CLI row's and more), with the Grad-CAM when one was asked for."""
    out = pred.as_dict()
    if explanation is not None and pred.judged:  # an image that cannot be judged gets no heatmap unless asked
        from skin_model.inference.gradcam import grayscale_png

        buffer = io.BytesIO()
        grayscale_png(explanation.heatmap).save(buffer, format="PNG")
        out["cam"] = {"class": explanation.target, "png_base64": base64.b64encode(buffer.getvalue()).decode("ascii")}
    return out


def create_api(
    model: Callable,
    max_upload_bytes: int,
    token: str | None = None,
    cors_origins: str = "",
    card: Callable | None = None,
    max_pending: int = MAX_PENDING,
    max_receiving: int = MAX_RECEIVING,
    body_deadline: BodyDeadline = BodyDeadline(),
    bodies_held: int = BODIES_HELD,
    memory: MemoryBudget | None = None,
) -> Starlette:
    """The API as one Starlette app, to mount at ``PREFIX``. ``model()`` returns the process's
    one ``SkinClassifier`` (the pages' own), or None while it is still loading; ``card()`` its
    model card without loading it (default: the loaded model's); ``memory`` the budget each
    decoding must fit in (``serving.memory``; default: none)."""
    receiving = Admission(max_receiving, "The server is receiving too many uploads; please try again shortly.")
    receiving_large = Admission(
        bodies_held, "The server is receiving too many large uploads; please try again shortly."
    )
    admission = Admission(max_pending)
    bodies = BodyBudget(bodies_held * max_upload_bytes)
    memory = memory or MemoryBudget(None)
    decoders = anyio.CapacityLimiter(DECODERS)  # the API's own threads: pages and static files never wait on them
    loading = ApiError(
        503, "loading", "The model is still loading; please try again shortly.", {"Retry-After": str(RETRY_AFTER_S)}
    )

    def model_card() -> dict:
        loaded = model()
        if loaded is not None:
            return loaded.card
        if card is None:
            raise loading
        return card()

    def version(request: Request) -> JSONResponse:
        try:
            current = model_card()
        except ApiError as err:
            return err.response()
        return JSONResponse(
            {
                "package_version": __version__,
                "model_version": current["model_version"],
                "members": [m["name"] for m in current["members"]],
                "classes": list(vocab.CLASSES),
                "priors": list(vocab.PRIOR_NAMES),
                "default_prior": vocab.DEFAULT_PRIOR,
                "refer_threshold": current["referral"]["threshold"],
                "intended_use": current["intended_use"],
            }
        )

    def ready(request: Request) -> JSONResponse:
        if model() is None:
            return loading.response()
        return JSONResponse({"ready": True})

    def authorise(request: Request) -> None:
        if not token:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        # compare_digest: the time taken does not tell how much of the token was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise ApiError(
                401, "unauthorised", "This API needs 'Authorization: Bearer <token>'.", {"WWW-Authenticate": "Bearer"}
            )

    async def predict(request: Request) -> JSONResponse:
        try:
            authorise(request)
            content_type = request.headers.get("content-type", "")
            if not content_type.lower().startswith("multipart/form-data"):
                raise ApiError(
                    415, "unsupported_media_type", "Send the image as multipart/form-data, in a field named 'image'."
                )
            loaded = model()
            if loaded is None:
                raise loading
            admission.check()  # every prediction slot busy: refused before a byte is read
            declared = request.headers.get("content-length", "")
            large = declared.isdigit() and int(declared) > LARGE_BODY
            slots = [receiving, receiving_large] if large else [receiving]
            for slot in slots:  # all free, or refused before a byte of the body is read
                slot.check()
            for slot in slots:  # no await between: no other request takes one meanwhile
                slot.enter()
        except ApiError as err:
            return err.response()
        with bodies.holding() as hold:  # the body's bytes, until its answer is sent
            return await answer_form(request, content_type, loaded, hold, slots)

    async def answer_form(
        request: Request, content_type: str, loaded, hold: Callable[[int], None], slots: list[Admission]
    ) -> JSONResponse:
        received = 0

        def hold_growing(size: int) -> None:  # a body that declared no length becomes large as it arrives
            nonlocal received
            received += size
            if received > LARGE_BODY and receiving_large not in slots:
                receiving_large.enter()  # none free: 503, after at most LARGE_BODY bytes read
                slots.append(receiving_large)
            hold(size)

        try:
            fields = await read_form(request, content_type, max_upload_bytes, body_deadline, hold_growing)
        except ApiError as err:
            return err.response()
        except ClientDisconnect:
            log.info("an API client left before its upload was complete")
            return ApiError(400, "client_disconnected", "The upload was interrupted.").response()
        finally:
            for slot in slots:
                slot.leave()
        try:
            admission.enter()  # the body is complete: now a prediction slot
        except ApiError as err:
            return err.response()
        try:
            image = fields.pop("image", None)
            if image is None:
                raise ApiError(400, "missing_image", "The form has no 'image' field.")
            if not image:
                raise ApiError(400, "empty_image", "The 'image' field is empty.")
            prior = _text(fields, "prior") or request.query_params.get("prior") or vocab.DEFAULT_PRIOR
            if prior not in vocab.PRIOR_NAMES:
                raise ApiError(
                    422, "unknown_prior", f"Unknown prior {prior!r}; expected one of {', '.join(vocab.PRIOR_NAMES)}."
                )
            cam = request.query_params.get("cam")
            if cam is not None and cam not in CAM_TARGETS:
                raise ApiError(
                    422, "unknown_class", f"Unknown class {cam!r} for cam; expected one of {', '.join(CAM_TARGETS)}."
                )
            meta = {name: _text(fields, name) for name in ("age", "sex", "site")}
            anyway = (_text(fields, "answer_anyway") or request.query_params.get("answer_anyway") or "").lower()
            if anyway and anyway not in YES + ("0", "false", "no", "off"):
                raise ApiError(422, "invalid_field", "answer_anyway is true or false.")

            def answer() -> dict:  # on an API thread: decoding here, torch work on the torch thread
                with memory.holding(decoding_bytes(image)):
                    if cam is None:
                        pred, explanation = loaded.predict(image, **meta, prior=prior), None
                    else:
                        pred, explanation = loaded.diagnose(image, **meta, target=cam, prior=prior)
                return prediction_json(pred.anyway() if anyway in YES else pred, explanation)

            return JSONResponse(await anyio.to_thread.run_sync(answer, limiter=decoders))
        except ApiError as err:
            return err.response()
        except InvalidInputError as err:
            return _refusal(err).response()
        except TorchThreadError as err:
            return ApiError(503, "busy", str(err), {"Retry-After": str(RETRY_AFTER_S)}).response()
        except MemoryShort:
            return ApiError(
                503,
                "busy",
                "The server has too little memory free for this image just now; please try again shortly.",
                {"Retry-After": str(RETRY_AFTER_S)},
            ).response()
        finally:
            admission.leave()

    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(max_upload_bytes, bool(token)))

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse({"error": codes.get(exc.status_code, "http_error"), "message": exc.detail}, exc.status_code)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed")  # the traceback goes to the server's log, never to the client
        return JSONResponse({"error": "internal_error", "message": "The server could not answer this request."}, 500)

    middleware = []
    origins = [o.strip() for o in cors_origins.split(",") if o.strip()]
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["Authorization"]
            )
        )
    return Starlette(
        routes=[
            Route("/version", version, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: unexpected},
    )


def api_routes(model: Callable, max_upload_bytes: int, card: Callable | None = None) -> list[Mount]:
    """The API mounted at ``PREFIX``, configured from the environment (token, CORS origins)."""
    api = create_api(
        model,
        max_upload_bytes,
        os.environ.get(TOKEN_ENV) or None,
        os.environ.get(CORS_ENV, ""),
        card,
        memory=MemoryBudget.for_server(settings().memory_limit),
    )
    return [Mount(PREFIX, app=api)]


def openapi_document(max_upload_bytes: int, token_required: bool = False) -> dict:
    """OpenAPI 3.1: the routes written by hand, the answer's fields from ``schema.ANSWER_FIELDS``."""
    error = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error", "message"],
    }

    def refusal(text: str) -> dict:
        return {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }

    predict_responses = {
        "200": {
            "description": "The answer: referral verdict first, then the seven diagnoses",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}},
        },
        "400": refusal(
            "missing_image, empty_image, or bad_request: a body that is not a readable form (no boundary, a part "
            "without a name, cut before its end) or a Content-Length that is not a number"
        ),
        "408": refusal(
            f"body_too_slow: no byte for {BODY_IDLE_S:.0f} s, or under {BODY_MIN_RATE // 1024} kB/s on average "
            f"after {BODY_GRACE_S:.0f} s"
        ),
        "413": refusal(f"The body passes {max_upload_bytes // 2**20} MB, or the image passes the pixel limits"),
        "415": refusal("Not multipart/form-data, or the image is no image that can be read"),
        "422": refusal(
            "invalid_metadata, unknown_prior, unknown_class, unknown_field, invalid_field, repeated_field, truncated_image, "
            "image_too_small: a field that cannot be read, or an unusable image"
        ),
        "500": refusal("internal_error: the server could not answer (its log has the details, never the client)"),
        "503": {
            **refusal(
                f"busy (more than {MAX_RECEIVING} uploads arriving or {BODIES_HELD} over "
                f"{LARGE_BODY // 2**20} MB, {MAX_PENDING} predictions in flight or waiting, too little "
                "memory free to decode the image, or the model's queue is full) or "
                "loading (the model has not loaded yet); try again after Retry-After seconds"
            ),
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    }
    if token_required:
        predict_responses["401"] = refusal("Missing or wrong bearer token")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skin_model prediction API",
            "version": __version__,
            "description": "Research and teaching demonstrator; not a medical device.",
        },
        "paths": {
            f"{PREFIX}/version": {
                "get": {
                    "operationId": "version",
                    "summary": "Package and model versions, classes and intended use",
                    "responses": {
                        "200": {
                            "description": "Versions",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Version"}}},
                        }
                    },
                }
            },
            f"{PREFIX}/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Whether the model has loaded (the server loads it once, at start-up)",
                    "responses": {
                        "200": {"description": "Ready", "content": {"application/json": {}}},
                        "503": {
                            **refusal("Still loading; try again after Retry-After seconds"),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                    },
                }
            },
            f"{PREFIX}/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "One dermoscopic image (and what is known of the patient) -> the answer",
                    "parameters": [
                        {
                            "name": "cam",
                            "in": "query",
                            "required": False,
                            "description": "Add the Grad-CAM heatmap of this class, a grayscale PNG (base64)",
                            "schema": {"type": "string", "enum": list(CAM_TARGETS)},
                        },
                        {
                            "name": "prior",
                            "in": "query",
                            "required": False,
                            "description": "The prior, also accepted as a form field",
                            "schema": {"type": "string", "enum": list(vocab.PRIOR_NAMES)},
                        },
                        {
                            "name": "answer_anyway",
                            "in": "query",
                            "required": False,
                            "description": "Give the numbers, diagnosis and heatmap of an image that cannot be "
                            "judged too (the answer says answered_anyway); also accepted as a form field",
                            "schema": {"type": "boolean"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "image": {"type": "string", "format": "binary"},
                                        "age": {"type": "number", "minimum": vocab.AGE_MIN, "maximum": vocab.AGE_MAX},
                                        "sex": {"type": "string", "enum": list(vocab.SEXES)},
                                        "site": {"type": "string", "enum": list(vocab.SITES)},
                                        "prior": {"type": "string", "enum": list(vocab.PRIOR_NAMES)},
                                        "answer_anyway": {"type": "boolean"},
                                    },
                                    "required": ["image"],
                                }
                            }
                        },
                    },
                    "responses": predict_responses,
                    **({"security": [{"bearer": []}]} if token_required else {}),
                }
            },
            f"{PREFIX}/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": error,
                "Version": {
                    "type": "object",
                    "properties": {
                        "package_version": {"type": "string"},
                        "model_version": {"type": "string"},
                        "members": {"type": "array", "items": {"type": "string"}},
                        "classes": {"type": "array", "items": {"type": "string"}},
                        "priors": {"type": "array", "items": {"type": "string"}},
                        "default_prior": {"type": "string"},
                        "refer_threshold": {"type": "number"},
                        "intended_use": {"type": "string"},
                    },
                    "required": ["package_version", "model_version", "members", "classes", "intended_use"],
                },
                "Prediction": {
                    "type": "object",
                    "properties": ANSWER_FIELDS
                    | {
                        "cam": {
                            "type": "object",
                            "properties": {"class": {"type": "string"}, "png_base64": {"type": "string"}},
                            "description": "the Grad-CAM asked for with ?cam=<class>: an 8-bit grayscale PNG",
                        }
                    },
                    "required": list(ANSWER_FIELDS),
                },
            },
        },
    }
