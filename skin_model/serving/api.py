"""The prediction API, as Starlette routes served beside the Streamlit pages (one process,
one port, one loaded model): ``GET /api/v1/version``, ``POST /api/v1/predict`` and
``GET /api/v1/openapi.json``.

Stateless: any replica answers any request. Uploads are read into memory, bounded
before they are read whole, and never written to disk or to the log. Every refusal is
``{"error": code, "message": words}`` with a 4xx status; an overloaded model is 503
with ``Retry-After``. Needs Starlette (installed with Streamlit); never imports Streamlit.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hmac
import io
import logging
import os
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from skin_model import __version__, vocab
from skin_model.inference.inputs import (
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidInputError,
    MetadataError,
    NotAnImageError,
    TruncatedImageError,
)
from skin_model.inference.torch_thread import TorchThreadError

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
TOKEN_ENV = "SKIN_MODEL_API_TOKEN"  # set: the prediction route needs "Authorization: Bearer <token>"
CORS_ENV = "SKIN_MODEL_API_CORS_ORIGINS"  # comma-separated origins allowed to call from a browser; unset: none
RETRY_AFTER_S = 5
FIELDS = ("image", "age", "sex", "site", "prior")

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


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to pass ``limit`` bytes: from its
    Content-Length before anything is read, else while it streams in."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "body_too_large", f"The request is larger than the {limit // 2**20} MB limit.")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "The Content-Length header is not a number.")
        if int(declared) > limit:
            raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(content_type: str, body: bytes) -> dict[str, bytes]:
    """A multipart/form-data body, parsed in memory (Starlette's own parser spools files
    over 1 MB to disk): field name -> raw bytes. Unknown fields are refused."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    if not message.is_multipart():
        raise ApiError(400, "bad_request", "The multipart body cannot be read.")
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise ApiError(400, "bad_request", "A part of the form has no field name.")
        if name not in FIELDS:
            raise ApiError(422, "unknown_field", f"Unknown form field {name!r}; expected {', '.join(FIELDS)}.")
        if name in fields:
            raise ApiError(
                422, "repeated_field", f"The form field {name!r} is given twice; send one image per request."
            )
        fields[name] = part.get_payload(decode=True) or b""
    return fields


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
    if explanation is not None:
        from skin_model.inference.gradcam import grayscale_png

        buffer = io.BytesIO()
        grayscale_png(explanation.heatmap).save(buffer, format="PNG")
        out["cam"] = {"class": explanation.target, "png_base64": base64.b64encode(buffer.getvalue()).decode("ascii")}
    return out


def create_api(model: Callable, max_upload_bytes: int, token: str | None = None, cors_origins: str = "") -> Starlette:
    """The API as one Starlette app, to mount at ``PREFIX``. ``model()`` returns the process's
    one ``SkinClassifier`` (the pages' own), loading it on first use."""

    def version(request: Request) -> JSONResponse:
        card = model().card
        return JSONResponse(
            {
                "package_version": __version__,
                "model_version": card["model_version"],
                "members": [m["name"] for m in card["members"]],
                "classes": list(vocab.CLASSES),
                "priors": list(vocab.PRIOR_NAMES),
                "default_prior": vocab.DEFAULT_PRIOR,
                "refer_threshold": card["referral"]["threshold"],
                "intended_use": card["intended_use"],
            }
        )

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
            fields = parse_form(content_type, await read_body(request, max_upload_bytes))
            image = fields.get("image")
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
            if cam is not None and cam not in vocab.CLASSES:
                raise ApiError(
                    422, "unknown_class", f"Unknown class {cam!r} for cam; expected one of {', '.join(vocab.CLASSES)}."
                )
            meta = {name: _text(fields, name) for name in ("age", "sex", "site")}
            loaded = model()

            def answer() -> dict:  # on a worker thread: decoding here, torch work on the torch thread
                if cam is None:
                    return prediction_json(loaded.predict(image, **meta, prior=prior))
                return prediction_json(*loaded.diagnose(image, **meta, target=cam, prior=prior))

            return JSONResponse(await run_in_threadpool(answer))
        except ApiError as err:
            return err.response()
        except InvalidInputError as err:
            return _refusal(err).response()
        except TorchThreadError as err:
            return ApiError(503, "busy", str(err), {"Retry-After": str(RETRY_AFTER_S)}).response()

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
            Route("/predict", predict, methods=["POST"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: unexpected},
    )


def api_routes(model: Callable, max_upload_bytes: int) -> list[Mount]:
    """The API mounted at ``PREFIX``, configured from the environment (token, CORS origins)."""
    api = create_api(model, max_upload_bytes, os.environ.get(TOKEN_ENV) or None, os.environ.get(CORS_ENV, ""))
    return [Mount(PREFIX, app=api)]


def openapi_document(max_upload_bytes: int, token_required: bool = False) -> dict:
    """OpenAPI 3.1, written by hand: two operations do not need a schema generator."""
    probabilities = {
        "type": "object",
        "properties": {c: {"type": "number", "minimum": 0, "maximum": 1} for c in vocab.CLASSES},
        "required": list(vocab.CLASSES),
    }
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
        "400": refusal("No image field, an empty image, or a body that is not a readable form"),
        "413": refusal(f"The body passes {max_upload_bytes // 2**20} MB, or the image passes the pixel limits"),
        "415": refusal("Not multipart/form-data, or the image is no image that can be read"),
        "422": refusal("An age, sex, site, prior or cam class that cannot be read, or an unusable image"),
        "503": {
            **refusal("The model is busy; try again after Retry-After seconds"),
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
                            "schema": {"type": "string", "enum": list(vocab.CLASSES)},
                        },
                        {
                            "name": "prior",
                            "in": "query",
                            "required": False,
                            "description": "The prior, also accepted as a form field",
                            "schema": {"type": "string", "enum": list(vocab.PRIOR_NAMES)},
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
                    "properties": {
                        "verdict": {"type": "string", "enum": ["suspicious", "not_suspicious", "cannot_judge"]},
                        "refer": {"type": "boolean", "description": "true also when the image cannot be judged"},
                        "referral_probability": {
                            "type": "number",
                            "description": "P(mel + bcc + akiec) under the training prior, read against refer_threshold",
                        },
                        "refer_threshold": {"type": "number"},
                        "prediction": {"type": "string", "enum": list(vocab.CLASSES)},
                        "confidence": {"type": "number"},
                        "uncertain_between": {"type": ["array", "null"], "items": {"type": "string"}},
                        "malignant_probability": {"type": "number", "description": "P(mel + bcc + akiec) under prior"},
                        "probabilities": probabilities,
                        "image_only_probabilities": probabilities,
                        "prior": {"type": "string", "enum": list(vocab.PRIOR_NAMES)},
                        "ood": {"type": "boolean"},
                        "ood_score": {"type": "number"},
                        "similar_cases": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "image_id": {"type": "string"},
                                    "dx": {"type": "string"},
                                    "dx_type": {"type": "string"},
                                    "similarity": {"type": "number"},
                                },
                            },
                        },
                        "metadata": {"type": "object"},
                        "model_version": {"type": "string"},
                        "cam": {
                            "type": "object",
                            "properties": {"class": {"type": "string"}, "png_base64": {"type": "string"}},
                        },
                    },
                    "required": ["verdict", "refer", "prediction", "probabilities", "ood", "prior", "model_version"],
                },
            },
        },
    }
