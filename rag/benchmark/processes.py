"""Child processes for the cold-start and memory sections: the ``rag`` command, its environment, RSS sampling."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import RagError
from ..settings import Settings


class Sampled:
    """A child process (in its own session) whose RSS, children included, is sampled every 0.1 s."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.cmd, self.env, self.log = cmd, env, log
        self.peak = self.current = 0
        self._done = threading.Event()

    def __enter__(self) -> Sampled:
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in __exit__
        self.popen = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                      start_new_session=True)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.popen.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            try:
                total = root.memory_info().rss
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += child.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.current = total
            self.peak = max(self.peak, total)
            self._done.wait(0.1)

    def wait_for_line(self, text: str, timeout: float) -> int:
        """Wait until the child prints ``text``; return the RSS at that moment."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RagError(f"the child process never printed {text!r}: {self.log_tail()}")
            time.sleep(0.2)
        return self.current

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace").strip()[-500:]

    def __exit__(self, *exc: object) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._done.set()
        self._thread.join(timeout=5)
        self._log.close()


def rag_command() -> list[str]:
    script = Path(sys.executable).with_name("rag")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rag.cli"]


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a child ``rag``: every setting as ``RAG_*``, so it sees what the bench sees."""
    from dataclasses import fields

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **extra}
    for f in fields(Settings):
        env[f"RAG_{f.name.upper()}"] = str(getattr(settings, f.name))
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
