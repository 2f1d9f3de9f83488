"""`nnmark serve` is MLServer with the nnmark runtime: driven here by software we did not write
(the protocol's reference client, tritonclient) and by hostile raw HTTP, on loopback."""
import gzip
import http.client
import json
import socket
import time

import numpy as np
import pytest

from tests.serving.servers import nan_onnx

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def server(model_server):
    return model_server  # the session's shared `nnmark serve` (tests/conftest.py)


@pytest.fixture
def images(marked):
    return np.random.default_rng(0).random((5, *marked.spec.input_shape), dtype=np.float32)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("version", ["", "1"], ids=["unversioned", "versioned"])
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_tritonclient_infers(server, marked, images, binary, version, compression):
    import torch

    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server}")
    tensor = tritonclient_http.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    result = client.infer("mark", [tensor], model_version=version,
                          outputs=[tritonclient_http.InferRequestedOutput("logits", binary_data=binary)],
                          request_compression_algorithm=compression, response_compression_algorithm=compression)
    with torch.no_grad():
        expected = marked.model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-4, atol=1e-4)


def test_tritonclient_metadata_versions_and_health(server, marked):
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mark") and client.is_model_ready("mark", "1")
    assert not client.is_model_ready("mark", "2")
    server_meta = client.get_server_metadata()
    assert server_meta["version"] and "binary_tensor_data" in server_meta["extensions"]
    for version in ("", "1"):
        meta = client.get_model_metadata("mark", version)
        assert meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, *marked.spec.input_shape]}]
        assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("case,match", [
    ("wrong input name", "one input named 'input'"),
    ("missing output", "no output 'probabilities'"),
    ("wrong shape", "must have shape"),
    ("wrong datatype", "must be FP32"),
    ("unknown model", "not found"),
    ("unknown version", "not found"),
])
def test_tritonclient_errors_are_the_protocols_then_the_client_goes_on(server, images, case, match):
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server}")
    name, data, datatype, model, version, output = "input", images, "FP32", "mark", "", "logits"
    if case == "wrong input name":
        name = "pixels"
    elif case == "missing output":
        output = "probabilities"
    elif case == "wrong shape":
        data = images[:, :, :4]
    elif case == "wrong datatype":
        data, datatype = images.astype(np.float64), "FP64"
    elif case == "unknown model":
        model = "nothing"
    else:
        version = "7"
    tensor = tritonclient_http.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    with pytest.raises(InferenceServerException, match=match):
        client.infer(model, [tensor], model_version=version, outputs=[tritonclient_http.InferRequestedOutput(output)])
    good = tritonclient_http.InferInput("input", list(images.shape), "FP32")
    good.set_data_from_numpy(images)
    assert client.infer("mark", [good]).as_numpy("logits").shape == (5, 10)


def _raw(port: int, request: bytes, read_for: float = 3.0) -> bytes:
    """Send raw bytes on one connection and collect what comes back until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_for) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def _infer_body(images) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(images.shape),
                                   "data": images.flatten().tolist()}]}).encode()


def test_an_error_leaves_the_connection_clean_and_never_echoes_the_body(server, images):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    secret = b'{"inputs": "SECRET-TRIGGER-IMAGES"}' * 50
    for path in ("/v2/models/nothing/infer", "/v2/models/mark/infer", "/v2/nowhere"):
        connection.request("POST", path, body=secret)
        response = connection.getresponse()
        body = response.read()
        assert response.status in (400, 404, 405) and b"SECRET" not in body
        assert "error" in json.loads(body) or "detail" in json.loads(body)
    connection.request("POST", "/v2/models/mark/infer", body=_infer_body(images))  # the same connection
    response = connection.getresponse()
    assert response.status == 200 and len(json.loads(response.read())["outputs"][0]["data"]) == 50


def test_hostile_http_gets_answers_not_crashes(server, images):
    bad_length = _raw(server, b"POST /v2/models/mark/infer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}")
    assert bad_length.startswith(b"HTTP/1.1 400")
    chunked_body = _infer_body(images)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (chunked_body[:100], chunked_body[100:]))
    chunked = _raw(server, b"POST /v2/models/mark/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                           b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    stalled = _raw(server, b"POST /v2/models/mark/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"in",
                   read_for=8)
    assert stalled.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 6  # --body-timeout 1
    gzipped = gzip.compress(_infer_body(images))
    answer = _raw(server, b"POST /v2/models/mark/infer HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
                          b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(gzipped) + gzipped)
    assert answer.startswith(b"HTTP/1.1 200")
    broken_binary = _raw(server, b"POST /v2/models/mark/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 b"Inference-Header-Content-Length: 900\r\nContent-Length: 2\r\n\r\n{}")
    assert broken_binary.startswith(b"HTTP/1.1 400") and b'"error"' in broken_binary


def test_nan_outputs_are_refused_by_the_server_and_by_the_client(tmp_path, server, marked, images, adi_key):
    from nnmark.api import verify_model
    from nnmark.errors import NonFiniteOutput
    from nnmark.verification.foreign import OnnxSuspect
    from nnmark.verification.http import HttpSuspect

    with pytest.raises(NonFiniteOutput, match="NaN"):
        verify_model(OnnxSuspect(nan_onnx(tmp_path / "nan.onnx", marked.spec.input_shape)), adi_key)
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server}")
    tensor = tritonclient_http.InferInput("pixels", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    with pytest.raises(InferenceServerException, match="NaN or infinite outputs"):
        client.infer("nan", [tensor])
    with pytest.raises(Exception, match="NaN or infinite outputs"):
        verify_model(HttpSuspect(f"http://127.0.0.1:{server}", "nan", retries=0), adi_key)


def test_verify_a_foreign_onnx_model_through_the_real_server(tmp_path, server, adi_key):
    """Someone else's export (input 'pixels', labels first, batch fixed at 1) served by `nnmark
    serve`, verified by `nnmark verify --endpoint`: the client learns the input from the metadata."""
    from typer.testing import CliRunner

    from nnmark.cli import app
    from nnmark.schemes import save_key

    save_key(adi_key, tmp_path / "key")
    records = {}
    for name in ("owner", "other"):
        result = CliRunner().invoke(app, ["verify", "--endpoint", f"http://127.0.0.1:{server}", "--model-name", name,
                                          "--model-version", "1", "--key", str(tmp_path / "key"), "--json"])
        assert result.exit_code == 0, result.output
        records[name] = json.loads(result.output)
    assert records["owner"]["owned"] and not records["other"]["owned"]
    assert records["owner"]["suspect"]["input_name"] == "pixels"
    assert records["owner"]["details"]["queries"] == 40
