"""A suspect behind an HTTP endpoint speaking the Open Inference Protocol (v2 REST, as served by
KServe, Triton and MLServer). Only the answers are seen, so only black-box schemes can use it.

The client reads the server's and the model's metadata first (the input's name, datatype and
shape, the outputs, the versions, whether binary tensors are understood), so a model exported by
someone else is queried as its server describes it. Every request has a deadline for its whole
answer (not per read) and a size limit; retries on 429/5xx and timeouts back off exponentially
(tenacity) under an overall deadline, and every attempt's images count as queries spent.
"""
from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import numpy as np
import torch

from nnmark.extras import require
from nnmark.errors import NNMarkError, NonFiniteOutput

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_TO_NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
             "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
             "UINT64": np.uint64, "BOOL": np.bool_}
_FLOAT_INPUTS = {"FP32", "FP64", "FP16"}


class _Retryable(Exception):
    """A failure worth another attempt (429/5xx, a timeout, a dropped connection)."""


class _Final(Exception):
    """A failure another attempt would repeat."""


class HttpSuspect:
    def __init__(self, url: str, model_name: str, *, model_version: str | None = None, batch_size: int = 64,
                 timeout: float = 10.0, deadline: float | None = 300.0, retries: int = 3, backoff: float = 0.5,
                 query_budget: int | None = None, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 binary: bool | None = None) -> None:
        for module in ("httpx", "tenacity"):
            require(module, "serve", "querying a suspect behind an endpoint")
        if not url.startswith(("http://", "https://")):
            raise NNMarkError("endpoint must be an http:// or https:// URL", field="--endpoint", got=url)
        if batch_size < 1 or timeout <= 0 or retries < 0 or backoff < 0 or (deadline is not None and deadline <= 0):
            raise NNMarkError("batch size, timeout, deadline, retries and backoff must be positive",
                              field="--endpoint")
        if not model_name or model_name != model_name.strip() or any(c in model_name for c in "/?#"):
            raise NNMarkError("model name must be non-empty, with no surrounding spaces and no '/', '?' or '#'",
                              field="--model-name", got=model_name)
        self.url = url.rstrip("/")
        self.model_name, self.model_version = model_name, model_version
        self.batch_size, self.timeout, self.retries, self.backoff = batch_size, timeout, retries, backoff
        self.deadline, self.max_response_bytes = deadline, max_response_bytes
        self.query_budget = query_budget
        self.description = f"{self.url} model '{model_name}'" + (f" version {model_version}" if model_version else "")
        self.queries = 0  # images sent, every attempt counted
        self.requests = 0
        self._binary_choice = binary
        self._started: float | None = None
        self._metadata: dict[str, Any] | None = None
        self._client = None

    @property
    def module(self) -> None:
        return None

    # --- the model's signature, from its metadata -------------------------------------------

    @property
    def model_path(self) -> str:
        name = urllib.parse.quote(self.model_name, safe="")
        version = f"/versions/{urllib.parse.quote(self.model_version, safe='')}" if self.model_version else ""
        return f"/v2/models/{name}{version}"

    @property
    def infer_url(self) -> str:
        return f"{self.url}{self.model_path}/infer"

    def describe(self) -> dict[str, Any]:
        """The model's input (name, datatype, shape without batch, fixed batch size or None), its
        class count where the metadata says it, and whether binary tensors are sent."""
        if self._metadata is None:
            server = self._request("GET", f"{self.url}/v2", None, {}, "server metadata", retry=True)
            meta = self._request("GET", f"{self.url}{self.model_path}", None, {}, "model metadata", retry=True)
            self._metadata = self._read_metadata(server, meta)
        return self._metadata

    def _read_metadata(self, server: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        where = f"{self.url}{self.model_path}"
        try:
            inputs = meta["inputs"]
            outputs = meta.get("outputs") or []
            if len(inputs) != 1:
                raise NNMarkError("the model must take exactly one input (images)", path=where,
                                  got=[i.get("name") for i in inputs])
            tensor = inputs[0]
            name, datatype = str(tensor["name"]), str(tensor["datatype"])
            shape = [int(d) for d in tensor["shape"]]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise NNMarkError("model metadata is not the protocol's", path=where,
                              expected='{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}') from None
        if datatype not in _FLOAT_INPUTS:
            raise NNMarkError(f"the model's input '{name}' is {datatype}; images are sent as floats", path=where,
                              expected="FP32, FP64 or FP16")
        if self.model_version is not None and meta.get("versions") and self.model_version not in meta["versions"]:
            raise NNMarkError(f"the server lists no version {self.model_version}", path=where,
                              got=meta["versions"])
        num_classes = None
        logits_output = None
        for output in outputs:
            dims = output.get("shape") if isinstance(output, dict) else None
            if isinstance(dims, list) and len(dims) == 2 and output.get("datatype") in _FLOAT_INPUTS:
                logits_output = output.get("name")
                num_classes = int(dims[1]) if isinstance(dims[1], int) and dims[1] > 0 else None
                break
        extensions = server.get("extensions") or [] if isinstance(server, dict) else []
        binary = self._binary_choice if self._binary_choice is not None else "binary_tensor_data" in extensions
        return {"input_name": name, "datatype": datatype, "input_shape": shape[1:] if shape else [],
                "fixed_batch": shape[0] if shape and shape[0] > 0 else None, "num_classes": num_classes,
                "logits_output": logits_output, "binary": binary, "versions": meta.get("versions") or [],
                "server": {k: server.get(k) for k in ("name", "version")} if isinstance(server, dict) else {}}

    @property
    def num_classes(self) -> int | None:
        return self.describe()["num_classes"]

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        shape = self.describe()["input_shape"]
        return tuple(shape) if shape and all(d > 0 for d in shape) else None

    # --- HTTP -----------------------------------------------------------------------------------

    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(http2=False, follow_redirects=False)
        return self._client

    def _remaining(self) -> float:
        if self._started is None:
            self._started = time.monotonic()
        if self.deadline is None:
            return float("inf")
        return self.deadline - (time.monotonic() - self._started)

    def _request(self, method: str, url: str, content: bytes | None, headers: dict[str, str], what: str,
                 retry: bool, count: int = 0) -> Any:
        from tenacity import (RetryError, Retrying, retry_if_exception_type, stop_after_attempt,
                              stop_before_delay, wait_exponential)

        def attempt() -> Any:
            if count and self.query_budget is not None and self.queries + count > self.query_budget:
                raise _Final(f"query budget exhausted: {count} more queries needed, "
                             f"{self.query_budget - self.queries} of {self.query_budget} left (retries count)")
            if self._remaining() <= 0:
                raise _Final(f"the {self.deadline:g} s deadline passed")
            self.requests += 1
            self.queries += count
            return self._once(method, url, content, headers)

        stop = stop_after_attempt((self.retries if retry else 0) + 1)
        if self.deadline is not None:
            stop = stop | stop_before_delay(max(self._remaining(), 0.0))
        retrying = Retrying(stop=stop, wait=wait_exponential(multiplier=self.backoff, max=30),
                            retry=retry_if_exception_type(_Retryable), reraise=False)
        try:
            return retrying(attempt)
        except RetryError as exc:
            attempts = exc.last_attempt.attempt_number
            problem = exc.last_attempt.exception()
            raise NNMarkError(f"{what} failed after {attempts} attempt(s): {problem}", path=url) from None
        except _Final as exc:
            raise NNMarkError(f"{what} failed: {exc}", path=url) from None

    def _once(self, method: str, url: str, content: bytes | None, headers: dict[str, str]) -> Any:
        import httpx

        budget = min(self.timeout, self._remaining())
        if budget <= 0:
            raise _Final(f"the {self.deadline:g} s deadline passed")
        ends = time.monotonic() + budget
        try:
            with self._http().stream(method, url, content=content, headers=headers,
                                     timeout=httpx.Timeout(budget)) as response:
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise _Final(f"the answer would be {int(declared)} bytes, over the "
                                 f"{self.max_response_bytes}-byte limit")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        raise _Final(f"the answer is over the {self.max_response_bytes}-byte limit")
                    if time.monotonic() > ends:
                        raise _Retryable(f"no complete answer within {budget:g} s")
                status = response.status_code
                header_length = response.headers.get("inference-header-content-length")
        except httpx.TimeoutException:
            raise _Retryable(f"no complete answer within {budget:g} s") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            text = str(exc) or type(exc).__name__
            raise _Retryable(f"connection failed ({text.splitlines()[0][:200]})") from None
        except httpx.InvalidURL as exc:
            raise _Final(f"invalid URL ({exc})") from None
        if status >= 400:
            detail = _error_text(bytes(body))
            problem = f"HTTP {status}: {detail}"
            raise (_Retryable if status in RETRYABLE_STATUS else _Final)(problem)
        try:
            if header_length is not None:
                return _read_binary_response(bytes(body), int(header_length))
            return json.loads(bytes(body))
        except (ValueError, UnicodeDecodeError):
            raise _Final("the answer is not the protocol's JSON") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- queries --------------------------------------------------------------------------------

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._answers(inputs, scores=False)

    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        """The endpoint's logits (refused where it answers labels only)."""
        return self._answers(inputs, scores=True)

    def _answers(self, inputs: torch.Tensor, scores: bool) -> torch.Tensor:
        meta = self.describe()
        expected = meta["input_shape"]
        got = list(inputs.shape[1:])
        if expected and (len(expected) != len(got) or any(e > 0 and e != g for e, g in zip(expected, got))):
            raise NNMarkError(f"the key's images are {got}; the endpoint's input '{meta['input_name']}' takes "
                              f"{expected}", path=f"{self.url}{self.model_path}")
        step = meta["fixed_batch"] or self.batch_size
        answers = []
        for start in range(0, len(inputs), step):
            batch = inputs[start:start + step].detach().cpu().float()
            if meta["fixed_batch"] and len(batch) != meta["fixed_batch"]:
                padding = batch[:1].expand(meta["fixed_batch"] - len(batch), *batch.shape[1:])
                labels = self._query(torch.cat([batch, padding]), scores)[:len(batch)]
            else:
                labels = self._query(batch, scores)
            answers.append(labels)
        return torch.cat(answers)

    def _query(self, batch: torch.Tensor, scores: bool = False) -> torch.Tensor:
        meta = self.describe()
        array = batch.numpy().astype(_TO_NUMPY[meta["datatype"]])
        tensor: dict[str, Any] = {"name": meta["input_name"], "datatype": meta["datatype"], "shape": list(array.shape)}
        headers = {"Content-Type": "application/json"}
        request: dict[str, Any] = {"id": f"nnmark-{self.requests}", "inputs": [tensor]}
        if meta["binary"]:
            raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            header = json.dumps(request).encode()
            content = header + raw
            headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
        else:
            tensor["data"] = array.flatten().tolist()
            content = json.dumps(request).encode()
        response = self._request("POST", self.infer_url, content, headers, "inference request", retry=True,
                                 count=len(batch))
        return self._labels(response, len(batch), scores)

    def _labels(self, response: Any, count: int, scores: bool = False) -> torch.Tensor:
        try:
            outputs = response["outputs"]
            parsed = [(o.get("name"), [int(v) for v in o["shape"]], o.get("datatype", "FP32"), o["data"])
                      for o in outputs]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise NNMarkError("answer is not an Open Inference Protocol response", path=self.infer_url,
                              expected='{"outputs": [{"shape": [N, K], "data": [...]}]}') from None
        wanted = self.describe()["logits_output"]
        parsed.sort(key=lambda o: (o[0] != wanted, len(o[1]) != 2))  # the logits first, labels as a fallback
        for name, shape, datatype, data in parsed:
            try:
                values = np.asarray(data, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                continue
            if len(shape) == 2 and shape[0] == count and values.size == shape[0] * shape[1]:
                if not np.isfinite(values).all():
                    raise NonFiniteOutput(f"endpoint {self.description} answered NaN or infinite logits "
                                          f"(output '{name}'): its answers cannot be read as labels")
                logits = torch.from_numpy(values.reshape(shape))
                return logits.float() if scores else logits.argmax(1)
            if scores:
                continue
            if shape in ([count], [count, 1]) and values.size == count and datatype not in _FLOAT_INPUTS:
                return torch.from_numpy(values.astype(np.int64))  # an endpoint that answers class indices
        if scores:
            raise NNMarkError("endpoint answered no [N, num_classes] scores (labels only?); this key reads the "
                              "suspect's scores", path=self.infer_url, got=[shape for _, shape, _, _ in parsed])
        raise NNMarkError("endpoint answered with the wrong output shape", path=self.infer_url,
                          expected=f"[{count}, num_classes] logits or [{count}] labels",
                          got=[shape for _, shape, _, _ in parsed])


def _error_text(body: bytes) -> str:
    """The protocol's error message, never the echoed request (it may hold the key's images)."""
    try:
        answer = json.loads(body)
        message = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(message, str):
            return message[:300]
        if isinstance(answer, dict) and "detail" in answer:
            return str(answer["detail"])[:300]
    except (ValueError, UnicodeDecodeError):
        pass
    return f"({len(body)} bytes that are not the protocol's error object)"


def _read_binary_response(body: bytes, header_length: int) -> dict[str, Any]:
    if not 0 < header_length <= len(body):
        raise ValueError("bad Inference-Header-Content-Length")
    answer = json.loads(body[:header_length])
    offset = header_length
    for output in answer.get("outputs", []):
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        dtype = np.dtype(_TO_NUMPY[output["datatype"]]).newbyteorder("<")
        output["data"] = np.frombuffer(body[offset:offset + int(size)], dtype=dtype).tolist()
        offset += int(size)
    return answer
