"""A real `snnctl serve` process for tests: started on a free port, read back its announced address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


class Server:
    """`python -m snnctl serve BUNDLE --port 0 --json ARGS` until `stop()`; `url` once it listens."""

    def __init__(self, bundle: Path, *args: str, timeout: float = 120.0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "SNNCTL_API_KEY"} | {"PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "snnctl", "serve", str(bundle), "--port", "0", "--json",
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, env=env)
        self.err_lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        line = self._first_line(timeout)
        event = json.loads(line)
        assert event["event"] == "listening", line
        self.url: str = event["url"]
        self.model: str = event["model"]

    def _first_line(self, timeout: float) -> str:
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not found or not found[0]:
            self.stop()
            raise AssertionError(f"server did not announce itself: {''.join(self.err_lines)[-2000:]}")
        return found[0]

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.err_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err_lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.1)
