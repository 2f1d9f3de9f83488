import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from nnmark.api import verify_model
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.models import save_model
from nnmark.schemes import save_key
from nnmark.serving import serve_model
from nnmark.verification.http import HttpSuspect


@pytest.fixture
def served(marked):
    server = serve_model(marked.model, model_name="mark", input_shape=marked.spec.input_shape, num_classes=10)
    yield server
    server.shutdown()
    server.server_close()


def test_verify_over_http_matches_in_process(served, marked, adi_key):
    suspect = HttpSuspect(served.url, "mark", batch_size=16)
    verdict = verify_model(suspect, adi_key)
    assert verdict.owned and verdict.matches == verify_model(marked.model, adi_key).matches
    assert verdict.details["queries"] == 40 and suspect.requests == 3  # 16 + 16 + 8


def test_server_speaks_the_protocol(served):
    with urllib.request.urlopen(f"{served.url}/v2/models/mark", timeout=5) as response:
        meta = json.loads(response.read())
    assert meta["inputs"][0]["shape"] == [-1, 1, 16, 16] and meta["outputs"][0]["shape"] == [-1, 10]
    with urllib.request.urlopen(f"{served.url}/v2/health/ready", timeout=5) as response:
        assert json.loads(response.read()) == {"ready": True}
    bad = urllib.request.Request(f"{served.url}/v2/models/mark/infer", method="POST",
                                 data=json.dumps({"inputs": [{"shape": [1, 3, 3, 3], "datatype": "FP32",
                                                              "data": [0.0] * 27}]}).encode())
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=5)
    assert info.value.code == 400


def test_query_budget_is_enforced(served, adi_key):
    suspect = HttpSuspect(served.url, "mark", query_budget=30)
    with pytest.raises(NNMarkError, match="needs 40 queries for this key and the budget leaves 30; nothing was sent"):
        verify_model(suspect, adi_key)
    assert suspect.queries == 0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_cli_server(*args: str) -> tuple[subprocess.Popen, int]:
    """`nnmark serve ARGS --port P` in a subprocess, once it answers on loopback."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "nnmark", "serve", *args, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live", timeout=1)
            return process, port
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError("server did not start") from None
            time.sleep(0.2)


def test_server_down_is_a_clear_error(adi_key):
    suspect = HttpSuspect(f"http://127.0.0.1:{free_port()}", "mark", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(NNMarkError, match="failed after 3 attempt"):
        verify_model(suspect, adi_key)


class Misbehaving(BaseHTTPRequestHandler):
    mode = "500"
    calls = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        count = body["inputs"][0]["shape"][0]
        if self.mode == "500":
            self.send_response(500)
            payload = b'{"error": "boom"}'
        elif self.mode == "slow":
            time.sleep(1.5)
            self.send_response(200)
            payload = b"{}"
        else:  # wrong output shape
            self.send_response(200)
            payload = json.dumps({"outputs": [{"name": "logits", "shape": [count, 3, 2],
                                               "datatype": "FP32", "data": [0.0] * (count * 6)}]}).encode()
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def misbehaving():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode,message,attempts", [
    ("500", "HTTP 500", 3), ("slow", "no answer within 0.3 s", 3), ("shape", "wrong output shape", 1)])
def test_misbehaving_endpoints(misbehaving, adi_key, mode, message, attempts):
    Misbehaving.mode, Misbehaving.calls = mode, 0
    url = f"http://127.0.0.1:{misbehaving.server_address[1]}"
    suspect = HttpSuspect(url, "m", retries=2, backoff=0.01, timeout=0.3)
    with pytest.raises(NNMarkError, match=message):
        verify_model(suspect, adi_key)
    if mode != "slow":
        assert Misbehaving.calls == attempts


def test_cli_serve_and_verify_endpoint(tmp_path, marked, control, adi_key):
    save_model(marked.model, marked.spec, tmp_path / "mark")
    save_model(control.model, control.spec, tmp_path / "ctrl")
    save_key(adi_key, tmp_path / "key")
    process, port = start_cli_server(str(tmp_path / "mark"))
    try:
        result = CliRunner().invoke(app, ["verify", "--endpoint", f"http://127.0.0.1:{port}", "--model-name", "mark",
                                          "--key", str(tmp_path / "key"), "--json"])
        assert result.exit_code == 0, result.output
        record = json.loads(result.output)
        assert record["owned"] and record["suspect"]["kind"] == "open-inference-protocol endpoint"
        assert record["details"]["queries"] == 40
    finally:
        process.terminate()
        process.wait(timeout=10)
