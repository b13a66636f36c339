"""Start the real app server (``streamlit run app.py``) on a free local port and wait until it
answers its health check: what the end-to-end browser tests and ``bench/app_load.py`` share."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Server", "free_port", "wait_healthy", "app_server"]


@dataclass
class Server:
    url: str                  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    t0: float                 # time.time() just before the process was launched
    t_healthy: float          # time.time() when the health check first answered "ok"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0, poll_s: float = 0.05) -> None:
    """Return once ``url``/_stcore/health answers "ok"; RuntimeError if ``proc`` exits or
    ``timeout`` seconds pass first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(poll_s)
    raise RuntimeError(f"streamlit did not become healthy within {timeout:.0f} s")


@contextlib.contextmanager
def app_server(root: str | os.PathLike, env: Mapping[str, str] | None = None, *, capture: bool = False,
               timeout: float = 90.0) -> Iterator[Server]:
    """Run ``streamlit run app.py`` (headless, 127.0.0.1, a free port) in ``root`` with the
    environment ``env`` (default: this process's); yield a :class:`Server` once it is healthy;
    terminate it on exit (kill after 15 s). ``capture``: its output goes to ``proc.stdout``
    (text), else it is discarded."""
    port = free_port()
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"],
                            cwd=Path(root), env=dict(env if env is not None else os.environ), stdout=out,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout)
        yield Server(url, proc, t0, time.time())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
