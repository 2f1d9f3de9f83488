"""The Open Inference Protocol client: against the real server (`nnmark serve`, MLServer) and
against endpoints that misbehave in every way we know of, each ending in one clear error."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from nnmark.api import verify_model
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.models import save_model
from nnmark.schemes import save_key
from nnmark.verification.http import HttpSuspect
from tests.serving.servers import free_port


@pytest.fixture
def served(model_server):
    return f"http://127.0.0.1:{model_server}"  # the session's shared `nnmark serve` (tests/conftest.py)


@pytest.mark.slow
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_verify_over_http_matches_in_process(served, marked, adi_key, binary):
    suspect = HttpSuspect(served, "mark", batch_size=16, binary=binary)
    verdict = verify_model(suspect, adi_key)
    assert suspect.describe()["binary"] is binary and suspect.describe()["input_name"] == "input"
    assert verdict.owned and verdict.matches == verify_model(marked.model, adi_key).matches
    assert verdict.details["queries"] == 40 and suspect.queries == 40


@pytest.mark.slow
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_scores_over_http_are_the_models_logits(served, marked, digits, binary):
    import torch

    suspect = HttpSuspect(served, "mark", batch_size=16, binary=binary)
    images = digits.test_x[:40]
    with torch.no_grad():
        expected = marked.model.eval()(images)
    scores = suspect.scores(images)
    assert scores.shape == (40, 10) and torch.allclose(scores, expected, atol=1e-4)
    assert suspect.queries == 40 and torch.equal(suspect.predict(images), expected.argmax(1))


@pytest.mark.slow
def test_versions_are_routed_and_unknown_ones_refused(served, adi_key):
    assert verify_model(HttpSuspect(served, "mark", model_version="1"), adi_key).owned
    with pytest.raises(NNMarkError, match="not found"):
        HttpSuspect(served, "mark", model_version="9").describe()


@pytest.mark.slow
def test_query_budget_is_enforced(served, adi_key):
    suspect = HttpSuspect(served, "mark", query_budget=30)
    with pytest.raises(NNMarkError, match="needs 40 queries for this key and the budget leaves 30; nothing was sent"):
        verify_model(suspect, adi_key)
    assert suspect.queries == 0


def test_server_down_is_a_clear_error(adi_key):
    suspect = HttpSuspect(f"http://127.0.0.1:{free_port()}", "mark", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(NNMarkError, match="failed after 3 attempt"):
        verify_model(suspect, adi_key)


@pytest.mark.parametrize("name", ["", "a/b", " padded", "x?y"])
def test_model_names_that_cannot_be_in_a_url_are_refused(name):
    with pytest.raises(NNMarkError, match="model name"):
        HttpSuspect("http://127.0.0.1:1", name)


@pytest.mark.slow
def test_a_name_with_a_space_is_quoted_and_answered_not_found(served):
    with pytest.raises(NNMarkError, match="HTTP 404: Model my model not found"):
        HttpSuspect(served, "my model", retries=0).describe()


METADATA = {"name": "m", "versions": ["1"], "platform": "x",
            "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 16, 16]}],
            "outputs": [{"name": "out", "datatype": "FP32", "shape": [-1, 10]}]}


class Misbehaving(BaseHTTPRequestHandler):
    """A fake endpoint: correct metadata, then the answer ``mode`` asks for."""
    protocol_version = "HTTP/1.1"
    mode = "500"
    calls = 0

    def log_message(self, *args):
        pass

    def _reply(self, status, payload, headers=()):
        self.send_response(status)
        for name, value in headers or [("Content-Length", str(len(payload)))]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self._reply(200, json.dumps({"name": "fake", "version": "0", "extensions": []} if self.path == "/v2"
                                    else METADATA).encode())

    def do_POST(self):
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        count = body["inputs"][0]["shape"][0]
        good = json.dumps({"outputs": [{"name": "out", "shape": [count, 10], "datatype": "FP32",
                                        "data": [0.0] * (count * 10)}]}).encode()
        mode = self.mode
        if mode == "500":
            self._reply(500, b'{"error": "boom"}')
        elif mode == "slow":
            time.sleep(1.5)
            self._reply(200, good)
        elif mode == "drip":  # a byte every 0.2 s: each read is quick, the whole answer never comes in time
            self._reply(200, b"", headers=[("Content-Length", str(len(good)))])
            for byte in good:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
        elif mode == "huge":
            self._reply(200, b"", headers=[("Content-Length", str(10 ** 9))])
        elif mode == "huge-chunked":
            self._reply(200, b"", headers=[("Transfer-Encoding", "chunked")])
            chunk = b"x" * 65536
            for _ in range(40):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        elif mode == "truncated":
            self._reply(200, good[:20], headers=[("Content-Length", str(len(good)))])
            self.close_connection = True
        elif mode == "not-http":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n")
            self.close_connection = True
        elif mode == "html":
            self._reply(404, b"<html>" + b"SECRET " * 100 + b"</html>")
        elif mode == "nan":
            self._reply(200, good.replace(b"[0.0", b"[NaN"))
        else:  # wrong output shape
            self._reply(200, json.dumps({"outputs": [{"name": "out", "shape": [count, 3, 2], "datatype": "FP32",
                                                      "data": [0.0] * (count * 6)}]}).encode())


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the client hanging up on a fake that misbehaves on purpose is the point, not news


@pytest.fixture
def misbehaving():
    server = QuietServer(("127.0.0.1", 0), Misbehaving)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode,message,attempts", [
    ("500", "HTTP 500: boom", 3),
    ("slow", "no complete answer within 0.5 s", 3),
    ("drip", "no complete answer within 0.5 s", 3),
    ("huge", "over the 1000000-byte limit", 1),
    ("huge-chunked", "over the 1000000-byte limit", 1),
    ("truncated", "connection failed", 3),
    ("not-http", "connection failed", 3),
    ("html", "HTTP 404: \\(713 bytes that are not the protocol's error object\\)", 1),
    ("nan", "NaN or infinite logits", 1),
    ("shape", "wrong output shape", 1)])
def test_misbehaving_endpoints(misbehaving, adi_key, mode, message, attempts):
    Misbehaving.mode, Misbehaving.calls = mode, 0
    suspect = HttpSuspect(misbehaving, "m", retries=2, backoff=0.01, timeout=0.5, max_response_bytes=10 ** 6)
    started = time.monotonic()
    with pytest.raises(NNMarkError, match=message) as info:
        verify_model(suspect, adi_key)
    assert "SECRET" not in str(info.value)
    assert Misbehaving.calls == attempts
    assert suspect.queries == 40 * attempts  # every attempt's images were sent, so every one counts
    assert time.monotonic() - started < 3 * (0.5 + 0.3) + 1  # each attempt ends at its deadline, drip or not


def test_the_overall_deadline_bounds_retries(misbehaving, adi_key):
    Misbehaving.mode, Misbehaving.calls = "slow", 0
    suspect = HttpSuspect(misbehaving, "m", retries=50, backoff=0.01, timeout=1.0, deadline=2.5)
    started = time.monotonic()
    with pytest.raises(NNMarkError, match="inference request failed"):
        verify_model(suspect, adi_key)
    assert time.monotonic() - started < 4.0 and Misbehaving.calls <= 3


def test_metadata_names_the_input_and_a_wrong_class_count_is_refused(misbehaving, adi_key):
    from nnmark.api import generate_key
    from nnmark.workflows.suspects import open_suspect

    Misbehaving.mode = "shape"
    suspect, described = open_suspect(adi_key, endpoint=misbehaving, model_name="m")
    assert described["input_name"] == "image" and suspect.num_classes == 10
    five = generate_key("adi", num_classes=5, input_shape=(1, 16, 16), seed=3, options={"size": 20})
    with pytest.raises(NNMarkError, match="answers 10 classes; the key is for 5"):
        open_suspect(five, endpoint=misbehaving, model_name="m")


def test_cli_endpoint_errors_are_one_line(misbehaving, tmp_path, adi_key):
    save_key(adi_key, tmp_path / "key")
    Misbehaving.mode = "not-http"
    result = CliRunner().invoke(app, ["verify", "--endpoint", misbehaving, "--model-name", "m", "--retries", "0",
                                      "--key", str(tmp_path / "key")])
    assert result.exit_code == 2 and "Traceback" not in result.output and "connection failed" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.slow
def test_cli_serve_and_verify_endpoint(tmp_path, served, adi_key):
    save_key(adi_key, tmp_path / "key")
    result = CliRunner().invoke(app, ["verify", "--endpoint", served, "--model-name", "mark",
                                      "--key", str(tmp_path / "key"), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["owned"] and record["suspect"]["kind"] == "open-inference-protocol endpoint"
    assert record["details"]["queries"] == 40 and record["suspect"]["server"]["name"] == "nnmark"


def test_serve_refuses_a_busy_port_and_a_bad_name(tmp_path, marked):
    save_model(marked.model, marked.spec, tmp_path / "mark")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = CliRunner().invoke(app, ["serve", str(tmp_path / "mark"), "--port", str(busy.getsockname()[1])])
    assert result.exit_code == 2 and "cannot listen" in result.output
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "mark"), "--model-name", "a b"])
    assert result.exit_code == 2 and "model name" in result.output
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "mark"), str(tmp_path / "mark"), "--model-name", "m"])
    assert result.exit_code == 2 and "single model" in result.output
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "mark"), str(tmp_path / "mark")])
    assert result.exit_code == 2 and "same name" in result.output
