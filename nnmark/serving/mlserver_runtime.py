"""The MLServer runtime for nnmark models (``implementation: nnmark.serving.mlserver_runtime.NNMarkRuntime``
in a ``model-settings.json``). Imported only by MLServer, so nnmark itself never imports MLServer."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError, MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor

from nnmark.serving.runtime import CLIENT_HEADER, load_served


class NNMarkRuntime(MLModel):
    """Serves ``parameters.uri`` (a model directory or an ONNX file). ``parameters.extra``:
    ``api_keys`` (a JSON list of keys whose marks the API carries: dawn, dark-knowledge) and ``query_log``
    (record every request first)."""

    async def load(self) -> bool:
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        # api_key and dawn_key: one key, in settings written before several could be stacked
        keys = extra.get("api_key", extra.get("dawn_key"))
        if "api_keys" in extra:
            try:
                keys = json.loads(extra["api_keys"])
            except json.JSONDecodeError:
                keys = None
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                from nnmark.errors import NNMarkError

                raise NNMarkError("must be a JSON list of key paths, as a string", field="parameters.extra.api_keys",
                                  got=extra["api_keys"])
        self.served = load_served(self.settings.parameters.uri, keys)
        self.query_log = None
        if extra.get("query_log"):
            from nnmark.serving.query_log import QueryLog

            self.query_log = QueryLog(extra["query_log"])
        served = self.served
        self.inputs = [MetadataTensor(name=served.input_name, datatype="FP32",
                                      shape=[-1, *served.input_shape])]
        self.outputs = [MetadataTensor(name=served.output_name, datatype="FP32",
                                       shape=[-1, served.num_classes])]
        self._lock = asyncio.Lock()  # one forward pass at a time: modules are not re-entrant
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        served = self.served
        names = [i.name for i in payload.inputs]
        if names != [served.input_name]:
            raise InferenceError(f"this model takes one input named '{served.input_name}', got {names}")
        for wanted in payload.outputs or []:
            if wanted.name != served.output_name:
                raise InferenceError(f"this model has no output '{wanted.name}' "
                                     f"(its output is '{served.output_name}')")
        tensor = payload.inputs[0]
        if tensor.datatype != "FP32":
            raise InferenceError(f"input '{tensor.name}' must be FP32, got {tensor.datatype}")
        shape = list(tensor.shape)
        if len(shape) != len(served.input_shape) + 1 or shape[1:] != list(served.input_shape) or shape[0] < 1:
            raise InferenceError(f"input '{tensor.name}' must have shape [N, "
                                 f"{', '.join(map(str, served.input_shape))}], got {shape}")
        try:
            batch = np.ascontiguousarray(NumpyCodec.decode_input(tensor), dtype=np.float32).reshape(shape)
        except (ValueError, TypeError) as exc:
            raise InferenceError(f"input '{tensor.name}' data does not fit shape {shape} ({exc})") from None
        if not np.isfinite(batch).all():
            raise InferenceError(f"input '{tensor.name}' holds NaN or infinite values")
        if self.query_log is not None:  # before answering: a query is in the log if it was answered
            headers = (payload.parameters.headers or {}) if payload.parameters else {}
            self.query_log.record(torch.from_numpy(batch), client=headers.get(CLIENT_HEADER, "unknown"))
        async with self._lock:
            logits = np.asarray(served.predict(batch), dtype=np.float32)
        if logits.shape != (shape[0], served.num_classes):
            raise MLServerError(f"the model answered shape {list(logits.shape)}, "
                                f"not [{shape[0]}, {served.num_classes}]", status_code=500)
        if not np.isfinite(logits).all():
            raise MLServerError("the model produced NaN or infinite outputs; refusing to answer them",
                                status_code=500)
        output = NumpyCodec.encode_output(served.output_name, logits)
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                 outputs=[output])
