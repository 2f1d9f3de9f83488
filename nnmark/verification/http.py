"""A suspect behind an HTTP endpoint speaking the Open Inference Protocol (v2 REST, as served by
KServe, Triton and MLServer): batched queries, timeouts, retries with exponential backoff, and a
query budget. Only the answers are seen, so only black-box schemes can use it."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import torch

from nnmark.errors import NNMarkError

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class HttpSuspect:
    def __init__(self, url: str, model_name: str, *, batch_size: int = 64, timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.5, query_budget: int | None = None,
                 input_name: str = "input") -> None:
        if not url.startswith(("http://", "https://")):
            raise NNMarkError("endpoint must be an http:// or https:// URL", field="--endpoint", got=url)
        if batch_size < 1 or timeout <= 0 or retries < 0 or backoff < 0:
            raise NNMarkError("batch size, timeout, retries and backoff must be positive", field="--endpoint")
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.batch_size, self.timeout, self.retries, self.backoff = batch_size, timeout, retries, backoff
        self.query_budget = query_budget
        self.input_name = input_name
        self.description = f"{self.url} model '{model_name}'"
        self.queries = 0
        self.requests = 0

    @property
    def module(self) -> None:
        return None

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.model_name}/infer"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.infer_url, data=data, method="POST",
                                             headers={"Content-Type": "application/json"})
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode(errors="replace")
                last_problem = f"HTTP {exc.code}: {detail}"
                if exc.code not in RETRYABLE_STATUS:
                    break
            except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                last_problem = f"no answer within {self.timeout:g} s" if "timed out" in str(reason) else str(reason)
            except json.JSONDecodeError:
                last_problem = "the answer is not JSON"
                break
        raise NNMarkError(f"inference request failed after {attempt + 1} attempt(s): {last_problem}",
                          path=self.infer_url)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        needed = len(inputs)
        if self.query_budget is not None and self.queries + needed > self.query_budget:
            raise NNMarkError(f"query budget exhausted: {needed} more queries needed, "
                              f"{self.query_budget - self.queries} of {self.query_budget} left",
                              field="--query-budget")
        answers = []
        for start in range(0, needed, self.batch_size):
            batch = inputs[start:start + self.batch_size].detach().cpu().float()
            response = self._post({"id": f"nnmark-{self.requests}", "inputs": [{
                "name": self.input_name, "datatype": "FP32", "shape": list(batch.shape),
                "data": batch.flatten().tolist()}]})
            self.queries += len(batch)
            answers.append(self._labels(response, len(batch)))
        return torch.cat(answers)

    def _labels(self, response: dict[str, Any], count: int) -> torch.Tensor:
        try:
            output = response["outputs"][0]
            shape = [int(v) for v in output["shape"]]
            values = torch.tensor(output["data"], dtype=torch.float32)
        except (KeyError, IndexError, TypeError, ValueError):
            raise NNMarkError("answer is not an Open Inference Protocol response", path=self.infer_url,
                              expected='{"outputs": [{"shape": [N, K], "data": [...]}]}') from None
        if len(shape) == 2 and shape[0] == count and values.numel() == shape[0] * shape[1]:
            return values.view(shape).argmax(1)
        if shape == [count] and values.numel() == count:  # an endpoint that returns class indices
            return values.long()
        raise NNMarkError("endpoint answered with the wrong output shape", path=self.infer_url,
                          expected=f"[{count}, num_classes] logits or [{count}] labels", got=shape)
