"""Serving on MLServer: an nnmark runtime for our model directories and for ONNX files.

Why MLServer rather than KServe's model server (both speak the Open Inference Protocol, v2 REST):
MLServer routes versioned models (``/v2/models/{m}/versions/{v}/...``) and reads gzip request
bodies, where KServe (its repository as of August 2026) answers every versioned route with "not
implemented". KServe reads the binary tensor extension and MLServer does not, so
:class:`BinaryTensorExtension` adds it in front of MLServer's app (a small ASGI layer, documented
in ``docs/serving.md``); every other part of the protocol, and all of HTTP (keep-alive, bodies,
chunked uploads, errors), is MLServer's and uvicorn's.

The runtime refuses what the protocol says to refuse: an input it does not have, an output it does
not have, a datatype or shape the model does not take, and it never answers with NaN or infinite
values (a client would read them as a confident label).
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nnmark.extras import require
from nnmark.errors import NNMarkError

MAX_BODY = 64 * 1024 * 1024
BODY_TIMEOUT_S = 30.0
CLIENT_HEADER = "x-nnmark-client"  # set by our ASGI layer from the socket, never from the client
_NUMPY_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
                 "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}


@dataclass
class ServedModel:
    """What the runtime serves: a function from a float32 batch to logits, and its signature."""

    predict: Callable[[np.ndarray], np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]  # without the batch dimension
    num_classes: int
    platform: str
    output_name: str = "logits"
    model: Any = None  # the module, for the query log's DAWN use


def load_served(uri: str | Path, api_key: str | Path | list[str | Path] | None = None) -> ServedModel:
    """A model directory of ours or an ONNX file, ready to answer batches of images in [0, 1].
    With ``api_key`` (one key, or a list, of the schemes the API carries: dawn, dark-knowledge),
    a model directory answers through those schemes' APIs (:func:`~nnmark.schemes.base.stacked_api`)."""
    path = Path(uri)
    api_keys = [] if api_key is None else [api_key] if isinstance(api_key, (str, Path)) else list(api_key)
    if path.suffix.lower() == ".onnx":
        if api_keys:
            raise NNMarkError("a marked API needs a model directory of ours, not an ONNX file", path=path,
                              field="--api-mark")
        return _served_onnx(path)
    from nnmark.models.store import load_model

    loaded = load_model(path)
    module = loaded.model
    if api_keys:
        from nnmark.schemes.base import get_scheme, stacked_api
        from nnmark.schemes.key import load_key

        keys = []
        for key_path in api_keys:
            key = load_key(key_path)
            implementation = get_scheme(key.scheme)
            if not implementation.marks_the_api:
                raise NNMarkError(f"is a '{key.scheme}' key, whose mark is in the model: serve the marked model "
                                  "itself", path=key_path, field="--api-mark", expected="a dawn or dark-knowledge key")
            implementation.check_fits(key, loaded.spec.num_classes, tuple(loaded.spec.input_shape),
                                      f"the model (key {key_path})")
            keys.append(key)
        module = stacked_api(loaded.model, keys)
    module.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(batch)).float().numpy()

    return ServedModel(predict, "input", tuple(loaded.spec.input_shape), loaded.spec.num_classes, "pytorch",
                       model=module)


def _served_onnx(path: Path) -> ServedModel:
    from nnmark.verification.foreign import OnnxSuspect

    suspect = OnnxSuspect(path)
    if suspect.fixed_input_shape is None or suspect.num_classes is None:
        raise NNMarkError("to be served, an ONNX model's input needs a fixed shape after the batch dimension "
                          "and its logits a fixed class count", path=path,
                          got={"input": list(suspect.input_shape), "classes": suspect.num_classes})
    fixed = suspect.fixed_batch

    def predict(batch: np.ndarray) -> np.ndarray:
        if fixed is None:
            return suspect._run(batch)
        rows = []
        for start in range(0, len(batch), fixed):
            part = batch[start:start + fixed]
            padded = np.concatenate([part, np.repeat(part[:1], fixed - len(part), axis=0)]) if len(part) < fixed else part
            rows.append(suspect._run(padded)[:len(part)])
        return np.concatenate(rows)

    # a fixed-batch graph is still served for any batch size: the runtime splits and pads
    return ServedModel(predict, suspect.input_name, suspect.fixed_input_shape, suspect.num_classes, "onnxruntime",
                       output_name=suspect.output_name)


class BinaryTensorExtension:
    """ASGI layer in front of MLServer's app: request bodies are limited in size and in the time
    they may take to arrive; a body in the protocol's binary tensor extension (the JSON header,
    then raw tensor bytes, as ``tritonclient`` sends by default) is rewritten as plain JSON; the
    client's address is passed on in a header that the client cannot set."""

    def __init__(self, app, max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT_S) -> None:
        self.app, self.max_body, self.body_timeout = app, max_body, body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != CLIENT_HEADER.encode()]
        client = (scope.get("client") or ("unknown", 0))[0]
        headers.append((CLIENT_HEADER.encode(), str(client).encode()))
        scope = {**scope, "headers": headers}
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, problem = await self._read_body(receive)
        if problem is not None:  # the body was not read to its end: the connection cannot be reused
            return await _send_error(send, *problem, close=True)
        encoding = (_header(headers, b"content-encoding") or b"identity").strip().lower()
        try:
            if encoding == b"gzip":
                body = gzip.decompress(body)
            elif encoding == b"deflate":
                body = zlib.decompress(body)
            elif encoding != b"identity":
                return await _send_error(send, 415, f"unsupported Content-Encoding {encoding.decode(errors='replace')}")
            header_length = _header(headers, b"inference-header-content-length")
            binary = header_length is not None
            if binary:
                body = _binary_to_json(body, int(header_length))
        except (ValueError, KeyError, TypeError, OSError, EOFError, zlib.error) as exc:
            return await _send_error(send, 400, f"bad request body: {exc}")
        drop = {b"inference-header-content-length", b"content-encoding", b"content-length"}
        if binary:
            drop.add(b"content-type")
        headers = [(k, v) for k, v in headers if k.lower() not in drop]
        headers += [(b"content-length", str(len(body)).encode())]
        if binary:
            headers += [(b"content-type", b"application/json")]
        scope = {**scope, "headers": headers}
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # the disconnect, when it comes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, _protocol_errors(send))

    async def _read_body(self, receive) -> tuple[bytes, tuple[int, str] | None]:
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                return b"", (408, f"request body did not arrive within {self.body_timeout:g} s")
            if message["type"] == "http.disconnect":
                return b"", (400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", (413, f"request body is over {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _header(headers, name: bytes) -> bytes | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _binary_to_json(body: bytes, header_length: int) -> bytes:
    if not 0 < header_length <= len(body):
        raise ValueError(f"Inference-Header-Content-Length {header_length} does not fit a body of {len(body)} bytes")
    request = json.loads(body[:header_length])
    offset = header_length
    for tensor in request.get("inputs", []):
        parameters = tensor.get("parameters") or {}
        size = parameters.pop("binary_data_size", None)
        if size is None:
            continue
        dtype = _NUMPY_DTYPES.get(tensor.get("datatype"))
        if dtype is None:
            raise ValueError(f"binary data of datatype {tensor.get('datatype')!r} is not supported")
        size = int(size)
        if size < 0 or offset + size > len(body):
            raise ValueError(f"input {tensor.get('name')!r} claims {size} bytes past the end of the body")
        tensor["data"] = np.frombuffer(body[offset:offset + size], dtype=np.dtype(dtype).newbyteorder("<")).tolist()
        offset += size
    if offset != len(body):
        raise ValueError(f"{len(body) - offset} bytes after the last binary input")
    for output in request.get("outputs", []) or []:
        (output.get("parameters") or {}).pop("binary_data", None)  # answered as JSON, which clients read
    return json.dumps(request).encode()


async def _send_error(send, status: int, message: str, close: bool = False) -> None:
    payload = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + ([(b"connection", b"close")] if close else [])})
    await send({"type": "http.response.body", "body": payload})


def _protocol_errors(send):
    """Error answers in the protocol's shape, ``{"error": "..."}``: FastAPI's validation errors
    (``{"detail": [...]}``, status 422) become a 400 with the first problem in words."""
    held: dict[str, Any] = {}

    async def wrapped(message):
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held["start"], held["body"] = message, b""
            return
        if "start" in held and message["type"] == "http.response.body":
            held["body"] += message.get("body", b"")
            if message.get("more_body", False):
                return
            status, text = held["start"]["status"], held["body"]
            if b"gzip" in (_header(held["start"].get("headers", []), b"content-encoding") or b""):
                with contextlib.suppress(OSError, EOFError):
                    text = gzip.decompress(text)
            try:
                answer = json.loads(text)
            except ValueError:
                answer = {"error": text.decode(errors="replace")[:500] or f"HTTP {status}"}
            if not isinstance(answer, dict) or "error" not in answer:
                detail = answer.get("detail") if isinstance(answer, dict) else answer
                if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                    first = detail[0]
                    detail = f"{first.get('msg', 'invalid')} at {'.'.join(map(str, first.get('loc', [])))}"
                answer = {"error": f"invalid request: {detail}"}
                status = 400 if status == 422 else status
            held.clear()
            return await _send_error(send, status, answer["error"] if isinstance(answer["error"], str)
                                     else json.dumps(answer["error"]))
        return await send(message)

    return wrapped


def server_settings(models: list[tuple[str | Path, str]], *, host: str = "127.0.0.1", port: int = 8080,
                    grpc_port: int = 0, api_key: str | Path | list[str | Path] | None = None,
                    query_log: str | Path | None = None, verbose: bool = False):
    """MLServer's server settings, and the model settings for serving each ``(uri, name)`` as
    version 1 of ``name``."""
    require("mlserver", "serve", "nnmark serve")
    from mlserver.settings import ModelParameters, ModelSettings, Settings

    settings = Settings(host=host, http_port=port, grpc_port=grpc_port, parallel_workers=0,
                        metrics_endpoint=None, debug=verbose, server_name="nnmark",
                        extensions=["binary_tensor_data"], load_models_at_startup=False,
                        model_repository_root=str(Path(models[0][0]).resolve().parent))
    extra = {key: str(value) for key, value in (("query_log", query_log),) if value is not None}
    if api_key is not None:
        paths = [api_key] if isinstance(api_key, (str, Path)) else list(api_key)
        if paths:
            extra["api_keys"] = json.dumps([str(path) for path in paths])
    served = [ModelSettings(name=name, implementation="nnmark.serving.mlserver_runtime.NNMarkRuntime",
                            versions=["1"], platform="nnmark",
                            parameters=ModelParameters(uri=str(uri), version="1", extra=extra))
              for uri, name in models]
    return settings, served


async def run_server(settings, model_settings: list, on_ready: Callable[[], None] | None = None,
                     body_timeout: float = BODY_TIMEOUT_S, max_body: int = MAX_BODY) -> None:
    """Run MLServer with the binary tensor layer until it is stopped (SIGINT/SIGTERM);
    ``on_ready`` is called once every model is loaded and the server listens."""
    from mlserver import MLServer

    server = MLServer(settings)
    rest = server._rest_server  # MLServer builds its FastAPI app here; we wrap it, we do not replace it
    rest._app = _wrapped(rest._app, max_body, body_timeout)
    task = asyncio.ensure_future(server.start(list(model_settings)))
    if on_ready is not None:
        while not task.done():
            await asyncio.sleep(0.05)
            loaded = list(await server._model_registry.get_models())
            if len(loaded) >= len(model_settings) and getattr(rest, "_server", None) is not None \
                    and rest._server.started:
                on_ready()
                break
    await task


def _wrapped(app, max_body: int, body_timeout: float):
    wrapped = BinaryTensorExtension(app, max_body=max_body, body_timeout=body_timeout)
    # MLServer adds handlers to its FastAPI app after start-up (custom endpoints), so those calls
    # must reach the app itself
    wrapped.add_api_route = app.add_api_route
    wrapped.routes = app.routes
    return wrapped
