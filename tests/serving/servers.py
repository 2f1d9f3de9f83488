"""Start real servers on loopback for the tests: ``nnmark serve`` (MLServer) in a subprocess."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_cli_server(*args: str, models: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
    """`nnmark serve ARGS --port P` in a subprocess, once the server (and each of ``models``)
    answers ready on loopback."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "nnmark", "serve", *args, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 90
    routes = [f"/v2/models/{name}/ready" for name in models] or ["/v2/health/ready"]
    while True:
        try:
            for route in routes:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{route}", timeout=1)
            return process, port
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                output = process.stdout.read().decode(errors="replace")[-3000:]
                raise AssertionError(f"server did not start:\n{output}") from None
            time.sleep(0.2)


def stop(process: subprocess.Popen) -> str:
    """Stop the server and return everything it printed."""
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output.decode(errors="replace")


def foreign_onnx(model, input_shape, path):
    """An ONNX file as someone else's exporter writes it: the TorchScript exporter, an input named
    'pixels', the labels as the first output, the batch fixed at 1."""
    import warnings

    import torch
    from torch import nn

    class Exported(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, pixels):
            logits = self.net(pixels)
            return logits.argmax(1), logits

    # the wrapper in eval mode too: the exporter restores the mode it found, recursively, and a
    # fresh wrapper is in training mode, which would leave the caller's model training
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Exported(model).eval(), (torch.rand(1, *input_shape),), str(path), dynamo=False,
                          input_names=["pixels"], output_names=["label", "scores"])
    return path


def nan_onnx(path, input_shape):
    """A graph whose every answer is 0/0: NaN logits, as a model with broken weights gives."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    features = int(np.prod(input_shape))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixels"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["zero"]),
         helper.make_node("Div", ["zero", "zero"], ["logits"])],
        "nan", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor("w", TensorProto.FLOAT, [features, 10], [0.0] * (features * 10))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
