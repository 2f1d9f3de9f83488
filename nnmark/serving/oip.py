"""A small Open Inference Protocol (KServe v2 REST) server for one model, on the standard library's
threading HTTP server.

Endpoints: ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}`` (metadata),
``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer`` with one FP32 tensor
``[N, C, H, W]`` of images in [0, 1]; the answer is one FP32 tensor ``logits`` ``[N, K]``.
"""
from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch
from torch import nn

MAX_BODY = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: "ModelServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        name = self.server.model_name
        if self.path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{name}/ready"):
            self._send(HTTPStatus.OK, {"live": True} if "live" in self.path else {"ready": True})
        elif self.path == f"/v2/models/{name}":
            self._send(HTTPStatus.OK, self.server.metadata())
        elif self.path == "/v2":
            self._send(HTTPStatus.OK, {"name": "nnmark", "extensions": []})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != f"/v2/models/{self.server.model_name}/infer":
            self._error(HTTPStatus.NOT_FOUND, f"no model at {self.path}")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._error(HTTPStatus.BAD_REQUEST, f"request body must be 1..{MAX_BODY} bytes")
            return
        try:
            request = json.loads(self.rfile.read(length))
            tensor = request["inputs"][0]
            shape = [int(v) for v in tensor["shape"]]
            if tensor.get("datatype", "FP32") != "FP32":
                raise ValueError("datatype must be FP32")
            if shape[1:] != list(self.server.input_shape):
                raise ValueError(f"shape must be [N, {', '.join(map(str, self.server.input_shape))}]")
            images = torch.tensor(tensor["data"], dtype=torch.float32).view(shape)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"bad inference request: {exc}")
            return
        if self.server.query_log is not None:  # before answering: a query is in the log if it was answered
            self.server.query_log.record(images, client=self.client_address[0])
        with self.server.lock, torch.no_grad():
            logits = self.server.model(images).float()
        self._send(HTTPStatus.OK, {
            "model_name": self.server.model_name, "id": request.get("id", ""),
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(logits.shape),
                         "data": logits.flatten().tolist()}]})


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: nn.Module, model_name: str,
                 input_shape: tuple[int, int, int], num_classes: int, verbose: bool = False,
                 query_log=None) -> None:
        super().__init__(address, _Handler)
        self.query_log = query_log  # a QueryLog: every answered request's images, for DAWN
        self.model, self.model_name = model.eval(), model_name
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.verbose = verbose
        self.lock = threading.Lock()  # one forward pass at a time: modules are not thread-safe

    def metadata(self) -> dict[str, Any]:
        return {"name": self.model_name, "platform": "pytorch", "versions": ["1"],
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *self.input_shape]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, self.num_classes]}]}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(model: nn.Module, *, model_name: str, input_shape: tuple[int, int, int], num_classes: int,
                host: str = "127.0.0.1", port: int = 0, verbose: bool = False, query_log=None) -> ModelServer:
    """A server bound to ``host:port`` (port 0: any free one); call ``serve_forever`` to run it.
    ``query_log``: a :class:`~nnmark.serving.query_log.QueryLog` recording every request."""
    return ModelServer((host, port), model, model_name, input_shape, num_classes, verbose, query_log)


def serve_model(model: nn.Module, **kwargs: Any) -> ModelServer:
    """Start a server in a background thread and return it (``shutdown()`` stops it)."""
    server = make_server(model, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
