"""The real app server for browser tests and benches: `streamlit run app.py` on a free port with its own database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`streamlit run app.py` in the checkout ``root`` (default: this one; another goes first on PYTHONPATH) on a
    free port, with CLEAR_DB=db and no demo run, its output in ``log_path``."""

    def __init__(self, db: Path, log_path: Path, root: Path = REPO):
        self.db, self.log_path = db, log_path
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "CLEAR_DB": str(db), "CLEAR_NO_DEMO": "1"}
        if root != REPO:
            env["PYTHONPATH"] = str(root)
        command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
        command += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(command, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the app server did not start:\n" + self.log_path.read_text()) from None
                time.sleep(0.5)

    def stop(self, timeout_s: float = 20) -> str:
        """Stop the server (so the database file is free) and return its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.log_path.read_text(errors="replace")
