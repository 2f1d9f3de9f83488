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


def start_cli_server(*args: str) -> tuple[subprocess.Popen, int]:
    """`nnmark serve ARGS --port P` in a subprocess, once its model answers ready on loopback."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "nnmark", "serve", *args, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
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
