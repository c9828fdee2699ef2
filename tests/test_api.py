"""The prediction API (skin_model.serving.api) through Starlette's test client, on the tiny model."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from starlette.routing import Route
from starlette.testclient import TestClient

from skin_model import vocab
from skin_model.inference.torch_thread import TorchThreadError
from skin_model.serving.api import PREFIX, create_api, openapi_document

from .conftest import encode, synthetic_lesion
from .hostile import HOSTILE_IMAGES

LIMIT = 2 * 2**20
LESION = encode(synthetic_lesion("mel", seed=5), "JPEG")


@pytest.fixture(scope="module")
def client(tiny_model):
    return TestClient(create_api(lambda: tiny_model, LIMIT), raise_server_exceptions=False)


def _predict(client, image=LESION, data=None, params=None, headers=None, name="image"):
    """A multipart/form-data POST: the image (unless None) and the text fields as parts."""
    files = {field: (None, value) for field, value in (data or {}).items()}
    if image is not None:
        files[name] = ("lesion.jpg", image, "image/jpeg")
    return client.post("/predict", files=files, params=params or {}, headers=headers or {})


def test_version_names_the_model_and_its_classes(client, tiny_model):
    body = client.get("/version").json()
    assert body["model_version"] == tiny_model.version
    assert body["members"] == [m["name"] for m in tiny_model.card["members"]]
    assert body["classes"] == list(vocab.CLASSES)
    assert "Not a medical device" in body["intended_use"]


@pytest.mark.parametrize("prior", vocab.PRIOR_NAMES)
def test_predict_equals_the_python_api(client, tiny_model, prior):
    response = _predict(client, data={"age": "55", "sex": "female", "site": "back", "prior": prior})
    assert response.status_code == 200, response.text
    body = response.json()
    pred = tiny_model.predict(LESION, age=55, sex="female", site="back", prior=prior)
    assert body["probabilities"] == pytest.approx(pred.probabilities, abs=1e-12)
    assert body["image_only_probabilities"] == pytest.approx(pred.image_only, abs=1e-12)
    assert (body["prediction"], body["prior"], body["verdict"], body["refer"]) == (
        pred.label,
        prior,
        pred.verdict,
        pred.refer,
    )
    assert body["referral_probability"] == pytest.approx(pred.referral_probability)
    assert [c["image_id"] for c in body["similar_cases"]] == [n.image_id for n in pred.neighbours]
    assert body["metadata"] == {"age": 55.0, "sex": "female", "site": "back"}
    assert "cam" not in body


def test_the_prior_can_also_be_a_query_parameter(client, tiny_model):
    body = _predict(client, params={"prior": "training"}).json()
    assert body["prior"] == "training"
    assert body["probabilities"] == pytest.approx(tiny_model.predict(LESION, prior="training").probabilities)


def test_cam_adds_the_heatmap_of_the_asked_class(client, tiny_model):
    body = _predict(client, params={"cam": "bcc"}).json()
    assert body["cam"]["class"] == "bcc"
    heat = Image.open(io.BytesIO(base64.b64decode(body["cam"]["png_base64"])))
    assert heat.mode == "L" and heat.size == Image.open(io.BytesIO(LESION)).size
    assert body["probabilities"] == pytest.approx(tiny_model.predict(LESION).probabilities, abs=1e-9)


BAD_IMAGES = {
    name: make
    for name, (make, error) in HOSTILE_IMAGES.items()
    if error is not None and name not in ("missing_path", "empty")
}
STATUS = {"NotAnImageError": 415, "TruncatedImageError": 422, "ImageTooSmallError": 422, "ImageTooLargeError": 413}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_an_unusable_image_gets_a_json_refusal(client, name):
    error = HOSTILE_IMAGES[name][1].__name__
    response = _predict(client, image=BAD_IMAGES[name]())
    assert response.status_code == STATUS[error], response.text
    body = response.json()
    assert set(body) == {"error", "message"} and "Traceback" not in body["message"]
    assert client.get("/version").status_code == 200  # and the server keeps answering


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"image": b""}, 400, "empty_image"),
        ({"image": None, "data": {"age": "50"}}, 400, "missing_image"),
        ({"name": "picture"}, 422, "unknown_field"),
        ({"data": {"age": "abc"}}, 422, "invalid_metadata"),
        ({"data": {"age": "130"}}, 422, "invalid_metadata"),
        ({"data": {"sex": "robot"}}, 422, "invalid_metadata"),
        ({"data": {"site": "elbow"}}, 422, "invalid_metadata"),
        ({"data": {"prior": "flat"}}, 422, "unknown_prior"),
        ({"params": {"cam": "melanoma"}}, 422, "unknown_class"),
    ],
)
def test_a_bad_request_gets_its_status_and_code(client, kwargs, status, code):
    response = _predict(client, **kwargs)
    assert (response.status_code, response.json()["error"]) == (status, code), response.text


def test_the_wrong_content_type_is_415(client):
    response = client.post("/predict", content=LESION, headers={"content-type": "image/jpeg"})
    assert (response.status_code, response.json()["error"]) == (415, "unsupported_media_type")


def test_a_body_over_the_limit_is_refused_before_it_is_read(client):
    declared = client.post(
        "/predict",
        content=b"x" * 10,
        headers={"content-type": "multipart/form-data; boundary=x", "content-length": str(LIMIT + 1)},
    )
    assert (declared.status_code, declared.json()["error"]) == (413, "body_too_large")

    def chunks():  # no Content-Length: refused while it streams
        for _ in range(LIMIT // 2**16 + 2):
            yield b"x" * 2**16

    streamed = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert (streamed.status_code, streamed.json()["error"]) == (413, "body_too_large")


def test_unknown_paths_and_methods_are_json(client):
    assert client.get("/nothing").json()["error"] == "not_found"
    response = client.get("/predict")
    assert (response.status_code, response.json()["error"]) == (405, "method_not_allowed")


def test_a_busy_model_is_503_with_retry_after(tiny_model):
    class Busy:
        card = tiny_model.card

        def predict(self, *args, **kwargs):
            raise TorchThreadError("The model is busy with too many requests; please try again shortly.")

    client = TestClient(create_api(lambda: Busy(), LIMIT))
    response = _predict(client)
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert response.json()["error"] == "busy"


def test_the_token_guards_predict_only(tiny_model):
    client = TestClient(create_api(lambda: tiny_model, LIMIT, token="s3cret"))
    assert client.get("/version").status_code == 200
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret"}):
        response = _predict(client, headers=headers)
        assert (response.status_code, response.json()["error"]) == (401, "unauthorised")
    assert _predict(client, headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_cors_only_when_configured(tiny_model):
    origin = {"origin": "https://viewer.example", "access-control-request-method": "POST"}
    closed = TestClient(create_api(lambda: tiny_model, LIMIT))
    assert "access-control-allow-origin" not in closed.options("/predict", headers=origin).headers
    opened = TestClient(create_api(lambda: tiny_model, LIMIT, cors_origins="https://viewer.example"))
    assert opened.options("/predict", headers=origin).headers["access-control-allow-origin"] == "https://viewer.example"


@pytest.mark.parametrize("token_required", [False, True])
def test_the_openapi_document_describes_every_route(client, token_required):
    served = client.get("/openapi.json").json()
    assert served == openapi_document(LIMIT, token_required=False)
    doc = openapi_document(LIMIT, token_required)
    assert doc["openapi"].startswith("3.")
    routes = {
        (PREFIX + r.path, method.lower())
        for r in client.app.routes
        if isinstance(r, Route)
        for method in r.methods - {"HEAD"}
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == routes
    responses = doc["paths"][f"{PREFIX}/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(responses)
    assert ("401" in responses) == token_required


def test_every_key_of_a_real_answer_is_described_and_every_described_key_is_answered(client):
    """A real image posted: the answer's keys are the schema's properties, each with a meaning, and
    each value has the described JSON type (with ?cam=, the Grad-CAM too)."""
    doc = client.get("/openapi.json").json()
    schema = doc["components"]["schemas"]["Prediction"]
    answer = _predict(client, data={"age": "50", "sex": "female"}, params={"cam": "mel"}).json()
    assert set(answer) == set(schema["properties"]) == set(schema["required"]) | {"cam"}
    json_types = {"string": str, "boolean": bool, "number": (int, float), "array": list, "object": dict}
    for key, value in answer.items():
        field = schema["properties"][key]
        assert field["description"], key
        allowed = field["type"] if isinstance(field["type"], list) else [field["type"]]
        assert any(value is None if t == "null" else isinstance(value, json_types[t]) for t in allowed), (key, value)


def test_the_real_server_answers_the_api_beside_the_pages(tmp_path):
    """`streamlit run streamlit_app.py`: a real HTTP request with a sample image gets the Python
    API's answer, and the pages are still served by the same process."""
    import time

    import httpx

    import skin_model

    from .conftest import SAMPLES_DIR
    from .server import streamlit_server

    sample = sorted(SAMPLES_DIR.glob("*.jpg"))[0].read_bytes()
    log = tmp_path / "streamlit.log"
    with streamlit_server(log) as url:
        version = httpx.get(f"{url}{PREFIX}/version", timeout=120)  # from the card: no wait for the model
        assert version.status_code == 200 and version.json()["classes"] == list(vocab.CLASSES)
        # The server loads the model at start-up, asked by nobody: ready without a prediction.
        for _ in range(240):
            ready = httpx.get(f"{url}{PREFIX}/ready", timeout=30)
            if ready.status_code == 200:
                break
            assert ready.json()["error"] == "loading" and ready.headers["retry-after"].isdigit()
            time.sleep(0.5)
        assert ready.json() == {"ready": True}
        response = httpx.post(
            f"{url}{PREFIX}/predict",
            files={"image": ("patient_durand.jpg", sample, "image/jpeg"), "age": (None, "60"), "sex": (None, "male")},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        refused = httpx.post(
            f"{url}{PREFIX}/predict", files={"image": ("notes_durand.txt", b"Patient Durand, 1961", "text/plain")}
        )
        assert refused.status_code == 415 and refused.json()["error"] == "not_an_image"
        assert httpx.get(f"{url}/", timeout=30).status_code == 200  # the pages' HTML
        assert httpx.get(f"{url}/_stcore/health", timeout=30).text == "ok"
    assert "durand" not in log.read_text().lower()  # neither a file name nor a byte of an upload in the log
    expected = skin_model.load_model().predict(sample, age=60, sex="male")
    assert response.json()["probabilities"] == pytest.approx(expected.probabilities, abs=1e-9)
    assert response.json()["verdict"] == expected.verdict


def test_a_body_over_a_megabyte_is_parsed_in_memory(tiny_model, monkeypatch):
    """Starlette's own form parser spools parts over 1 MB to disk; this one never writes a file."""
    import tempfile

    import numpy as np

    def no_files(*args, **kwargs):
        raise AssertionError("an upload reached the disk")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_files)
    noise = np.random.default_rng(0).integers(0, 255, (700, 900, 3), dtype=np.uint8)
    big = encode(Image.fromarray(noise), "JPEG", quality=100)
    assert 2**20 < len(big) < LIMIT
    client = TestClient(create_api(lambda: tiny_model, LIMIT))
    response = _predict(client, image=big, data={"age": "40", "answer_anyway": "true"})  # noise: maybe out of domain
    assert response.status_code == 200, response.text
    assert response.json()["probabilities"] == pytest.approx(tiny_model.predict(big, age=40).probabilities, abs=1e-9)


MULTIPART = "multipart/form-data; boundary=xyz"
LESION_FORM = b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + LESION + b"\r\n--xyz--\r\n"


@pytest.mark.parametrize(
    "body, content_type, status, code",
    [
        (
            b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + LESION[:500],
            MULTIPART,
            400,
            "bad_request",
        ),
        (b"--xyz\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--xyz--\r\n", MULTIPART, 400, "bad_request"),
        (b"garbage that is no form at all", MULTIPART, 400, "bad_request"),
        (b"--xyz--\r\n", "multipart/form-data", 400, "bad_request"),
        (
            b'--xyz\r\nContent-Disposition: form-data; name="age"\r\n\r\n40\r\n'
            b'--xyz\r\nContent-Disposition: form-data; name="age"\r\n\r\n50\r\n--xyz--\r\n',
            MULTIPART,
            422,
            "repeated_field",
        ),
    ],
    ids=["cut_short", "part_without_name", "not_a_form", "no_boundary", "repeated_field"],
)
def test_a_malformed_body_gets_a_json_refusal(client, body, content_type, status, code):
    response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert _predict(client).status_code == 200  # and the next request is answered


async def _asgi_post(app, body: bytes, go_on=None, piece: int | None = None) -> tuple[list[dict], int]:
    """A multipart POST to /predict straight through ASGI: the messages sent back, and how many
    times the app asked for the body. It declares the body's length, and sends it at once; with
    ``go_on`` (an asyncio.Event), the first 1,000 bytes at once and the rest only once it is set;
    with ``piece``, in pieces of that many bytes, declaring no length."""
    sent, reads = [], []
    if go_on is not None:
        parts = [body[:1000], body[1000:]]
    else:
        parts = [body[i : i + piece] for i in range(0, len(body), piece)] if piece else [body]

    async def receive():
        reads.append(1)
        if go_on is not None and len(reads) > 1:
            await go_on.wait()
        k = len(reads) - 1
        return {"type": "http.request", "body": parts[k] if k < len(parts) else b"", "more_body": k < len(parts) - 1}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", MULTIPART.encode())]
        + ([] if piece else [(b"content-length", str(len(body)).encode())]),
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return sent, len(reads)


def test_admission_refuses_before_reading_the_body_while_the_model_is_held_busy(tiny_model):
    """``max_pending`` predictions in flight: the next is 503 with Retry-After, and its body is
    never read; once the held one finishes, requests are admitted again."""
    import asyncio
    import threading

    import httpx

    entered, release = threading.Event(), threading.Event()

    class Held:
        card = tiny_model.card

        def predict(self, *args, **kwargs):
            entered.set()
            release.wait(30)
            return tiny_model.predict(*args, **kwargs)

    app = create_api(lambda: Held(), LIMIT, max_pending=1)
    body = LESION_FORM

    async def raw_post() -> tuple[list[dict], int]:
        return await _asgi_post(app, body)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            held = asyncio.create_task(
                http.post("/predict", files={"image": ("a.jpg", LESION, "image/jpeg")}, timeout=60)
            )
            while not entered.is_set():
                await asyncio.sleep(0.01)
            refused, reads = await raw_post()
            release.set()
            first = await held
            after, _ = await raw_post()
        return refused, reads, first, after

    refused, reads, first, after = asyncio.run(scenario())
    start = next(m for m in refused if m["type"] == "http.response.start")
    headers = dict(start["headers"])
    assert start["status"] == 503 and headers[b"retry-after"].isdigit() and reads == 0
    assert b'"busy"' in b"".join(m.get("body", b"") for m in refused)
    assert first.status_code == 200
    assert next(m for m in after if m["type"] == "http.response.start")["status"] == 200


def test_while_the_model_loads_predict_and_ready_say_so_and_version_reads_the_card(tiny_model):
    client = TestClient(create_api(lambda: None, LIMIT, card=lambda: tiny_model.card))
    for response in (_predict(client), client.get("/ready")):
        assert response.status_code == 503 and response.headers["retry-after"].isdigit()
        assert response.json()["error"] == "loading"
    assert client.get("/version").json()["model_version"] == tiny_model.version
    loaded = TestClient(create_api(lambda: tiny_model, LIMIT))
    assert loaded.get("/ready").json() == {"ready": True}


def test_cam_can_explain_the_referral_score(client, tiny_model):
    body = _predict(client, params={"cam": "malignant"}).json()
    assert body["cam"]["class"] == "malignant"
    heat = Image.open(io.BytesIO(base64.b64decode(body["cam"]["png_base64"])))
    assert heat.mode == "L" and heat.size == Image.open(io.BytesIO(LESION)).size


def test_large_bodies_take_large_body_slots_and_small_ones_are_still_read(tiny_model):
    """A body declaring over ``LARGE_BODY`` needs one of ``bodies_held`` large-body slots (here 1):
    while a 1.5 MB body is arriving, a second large one is 503 at once, its body never read (large
    bodies cut halfway left the server's heap higher), and one declaring no length is 503 once
    over LARGE_BODY; a small one is read and answered; once the first is done, a large body is
    read again."""
    import asyncio

    from skin_model.serving.api import LARGE_BODY

    app = create_api(lambda: tiny_model, LIMIT, bodies_held=1)
    small = LESION_FORM
    closing = b"\r\n--xyz--\r\n"
    big = small[: -len(closing)] + b"x" * (LARGE_BODY + 500_000 - len(small)) + closing  # the image part padded

    async def raw_post(body: bytes, go_on: asyncio.Event | None = None, piece: int | None = None):
        sent, reads = await _asgi_post(app, body, go_on, piece)
        status = next(m for m in sent if m["type"] == "http.response.start")["status"]
        return status, reads, b"".join(m.get("body", b"") for m in sent)

    async def scenario():
        go_on = asyncio.Event()
        first = asyncio.create_task(raw_post(big, go_on))
        await asyncio.sleep(0.2)  # the first has read its first chunk and waits for the rest
        refused = await raw_post(big)
        undeclared = await raw_post(big, piece=2**16)  # no length: refused once over LARGE_BODY
        small_meanwhile = await raw_post(small)
        go_on.set()
        await first
        after = await raw_post(big)
        return refused, undeclared, small_meanwhile, after

    (status, reads, body), undeclared, small_meanwhile, after = asyncio.run(scenario())
    assert status == 503 and reads == 0 and b'"busy"' in body
    assert undeclared[0] == 503 and b'"busy"' in undeclared[2]
    assert undeclared[1] == LARGE_BODY // 2**16 + 1  # read up to the first piece over LARGE_BODY, no further
    assert small_meanwhile[:2] == (200, 1)
    assert after[:2] == (200, 1)
