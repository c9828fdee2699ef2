"""No slow client can lock the API: a body that trickles in is cut (408) and frees its slot, and
bodies still arriving never hold the prediction slots of requests whose bodies are complete.

A real HTTP server (uvicorn) on loopback, with raw sockets that send a request's headers and then
one byte at a time; the deadline is shortened so that the test takes seconds."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from skin_model.serving.api import BodyDeadline, create_api

from .conftest import encode, synthetic_lesion

DEADLINE = BodyDeadline(idle_s=2.0, grace_s=1.0, min_rate=1000)
LESION = encode(synthetic_lesion("nv", seed=3), "JPEG")


@contextmanager
def api_server(model, **kwargs):
    import uvicorn

    app = create_api(lambda: model, 2 * 2**20, body_deadline=DEADLINE, **kwargs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Trickler(threading.Thread):
    """A client that sends a predict request's headers, then one body byte every ``every`` seconds;
    records the status it was answered and how long that took."""

    def __init__(self, url: str, every: float = 0.5):
        super().__init__(daemon=True)
        self.port, self.every = int(url.rsplit(":", 1)[1]), every
        self.status, self.seconds = None, None

    def run(self) -> None:
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head.encode())
            sock.settimeout(self.every)
            answer = b""
            while time.monotonic() - started < 30 and b"\r\n" not in answer:
                try:
                    answer += sock.recv(4096)
                    if not answer:
                        break
                except TimeoutError:
                    try:
                        sock.sendall(b"-")
                    except OSError:
                        break
        self.seconds = time.monotonic() - started
        if answer.startswith(b"HTTP/1.1 "):
            self.status = int(answer.split()[1])


def _post(url: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"image": ("lesion.jpg", LESION, "image/jpeg")}, timeout=30)


def test_trickling_clients_are_cut_within_the_deadline_and_normal_clients_are_answered(tiny_model):
    with api_server(tiny_model) as url:
        tricklers = [Trickler(url) for _ in range(6)]
        for t in tricklers:
            t.start()
        time.sleep(0.3)  # every trickler holds its reading slot now
        started = time.monotonic()
        answer = _post(url)
        assert answer.status_code == 200 and time.monotonic() - started < 30
        for t in tricklers:
            t.join(timeout=30)
        # cut by the rate rule: grace 1 s, then 1000 B/s where a byte every 0.5 s arrives
        assert [t.status for t in tricklers] == [408] * 6
        assert max(t.seconds for t in tricklers) < DEADLINE.grace_s + DEADLINE.idle_s + 2


def test_the_deadline_frees_the_reading_slots_that_tricklers_hold(tiny_model):
    """With every reading slot taken by a trickler, a normal client is refused (503); once the
    deadline cuts them, the same client is answered."""
    with api_server(tiny_model, max_receiving=2) as url:
        tricklers = [Trickler(url) for _ in range(2)]
        for t in tricklers:
            t.start()
        time.sleep(0.3)
        refused = _post(url)
        assert refused.status_code == 503 and refused.json()["error"] == "busy"
        for t in tricklers:
            t.join(timeout=30)
        assert _post(url).status_code == 200


@pytest.mark.parametrize("every", [0.05])
def test_a_slow_but_steady_upload_is_not_cut(tiny_model, every):
    """Above the minimum rate an upload goes through, however long it takes within the limit."""
    import io

    with api_server(tiny_model) as url:

        def slow_body():
            body = io.BytesIO(LESION)
            while chunk := body.read(200):  # 200 B every 50 ms: 4 kB/s, over the 1 kB/s floor
                time.sleep(every)
                yield chunk

        boundary = b"slowboundary"
        head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="l.jpg"\r\n\r\n'
        tail = b"\r\n--" + boundary + b"--\r\n"

        def body():
            yield head
            yield from slow_body()
            yield tail

        answer = httpx.post(
            f"{url}/predict",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text


class Holder(threading.Thread):
    """A client that sends ``size`` bytes of a body at once, then a byte every 0.3 s (within the
    deadline), until ``release`` is set: it holds those bytes in the server's memory meanwhile."""

    def __init__(self, url: str, size: int):
        super().__init__(daemon=True)
        self.port, self.size = int(url.rsplit(":", 1)[1]), size
        self.sent, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {self.size + 1000}\r\n\r\n"
        )
        part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head.encode() + part + b"-" * (self.size - len(part)))  # a valid form, so far
            self.sent.set()
            while not self.release.wait(0.3):
                sock.sendall(b"-")


def test_the_bodies_held_at_once_are_bounded_by_bytes_and_given_back(tiny_model):
    """A body that would take the bytes held past the budget is refused (503) as it arrives, and
    every byte is given back when its request ends: the same upload is then answered."""
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    photo = buffer.getvalue()
    assert len(photo) > 100_000
    limit = 2 * 2**20  # api_server's upload limit; a budget of one upload at the limit
    with api_server(tiny_model, bodies_held=1) as url:
        holder = Holder(url, limit - 50_000)
        holder.start()
        assert holder.sent.wait(10)
        time.sleep(0.5)  # the server has read what was sent
        refused = httpx.post(f"{url}/predict", files={"image": ("photo.jpg", photo, "image/jpeg")}, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"] == "busy"
        assert refused.headers["retry-after"]
        assert _post(url).status_code == 200  # a small upload still fits beside the held bytes
        holder.release.set()
        holder.join(timeout=10)
        time.sleep(0.5)  # the server has seen the holder leave
        answered = httpx.post(f"{url}/predict", files={"image": ("photo.jpg", photo, "image/jpeg")}, timeout=30)
        assert answered.status_code == 200, answered.text
