"""``nnmark serve`` and ``nnmark export`` as flows: every check on what is to be served happens
before a server starts, and an exported file is written atomically."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nnmark.errors import NNMarkError
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import load_key


@dataclass
class Serving:
    urls: list[str]
    settings: Any
    model_settings: list
    body_timeout: float

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until interrupted (MLServer, in this process)."""
        import asyncio

        from nnmark.serving.runtime import run_server

        asyncio.run(run_server(self.settings, self.model_settings, body_timeout=self.body_timeout, on_ready=on_ready))


def prepare_serving(models: list[str | Path], *, host: str = "127.0.0.1", port: int = 8080,
                    model_name: str | None = None, api_marks: list[str | Path] | None = None,
                    query_log: str | Path | None = None, body_timeout: float = 30.0,
                    verbose: bool = False) -> Serving:
    """Check every model, key and setting, and the port, and return what :meth:`Serving.run` serves."""
    from nnmark.serving.query_log import QueryLog
    from nnmark.serving.runtime import load_served, server_settings

    models = [Path(model) for model in models]
    api_marks = list(api_marks or [])
    if len(models) > 1 and (model_name is not None or api_marks):
        raise NNMarkError("--model-name and --api-mark apply to a single model; several are served under their own "
                          "names", field="--model-name/--api-mark")
    for model in models:
        load_served(model, api_marks)  # every problem with a model or the key is reported here, before a server starts
    if api_marks and query_log is None and any(get_scheme(load_key(path).scheme).needs_query_log for path in api_marks):
        raise NNMarkError("a DAWN API needs --query-log: its marks can only ever be verified from the log of the "
                          "queries it answered", field="--query-log")
    if query_log is not None:
        QueryLog(query_log)
    if body_timeout <= 0:
        raise NNMarkError("must be positive", field="--body-timeout", got=body_timeout)
    names = [model_name] if model_name else [
        model.stem if model.suffix.lower() == ".onnx" else model.resolve().name for model in models]
    for name in names:
        if not name or any(c in name for c in " /?#%"):
            raise NNMarkError("model name must be non-empty and hold no spaces, '/', '?', '#' or '%'",
                              field="--model-name", got=name)
    if len(set(names)) != len(names):
        raise NNMarkError("two models would be served under the same name", field="MODELS", got=names)
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise NNMarkError(f"cannot listen on {host}:{port} ({exc.strerror})", field="--port") from None
    settings, model_settings = server_settings(list(zip(models, names)), host=host, port=port,
                                               api_key=api_marks or None, query_log=query_log, verbose=verbose)
    return Serving([f"http://{host}:{port}/v2/models/{name}/infer" for name in names], settings, model_settings,
                   body_timeout)


def export_model_file(fmt: str, model: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """``nnmark export``: one of our model directories as a file another runtime serves (ONNX)."""
    from nnmark.models.export import export_onnx
    from nnmark.models.store import load_model

    if fmt != "onnx":
        raise NNMarkError(f"unknown export format '{fmt}'", expected="onnx")
    loaded = load_model(model)
    return export_onnx(loaded.model, loaded.spec, out, force=force)
