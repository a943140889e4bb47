"""A real Label Studio server for tests: installed from PyPI into its own venv, run on loopback.

The venv lives outside the project's environment (the project never depends on the server):
``$ALOE_LABEL_STUDIO_VENV`` or ``~/.cache/aloe-al/label-studio-<version>`` (``$XDG_CACHE_HOME``
respected), created on first use (about 2 minutes) and reused afterwards. It is built under a
temporary name and renamed when complete, so an interrupted install is never taken for a good one.

The server runs on 127.0.0.1 with a fresh data directory, a legacy API token, local files served
from a document root in it, and every outside call switched off (error reporting, analytics, the
version check). It dies with the test process even when that one is killed (Linux).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VERSION = "1.23.2"
START_TIMEOUT_S = 420.0
PR_SET_PDEATHSIG = 1


def venv_path() -> Path:
    """Where the Label Studio venv is (or will be)."""
    override = os.environ.get("ALOE_LABEL_STUDIO_VENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "aloe-al" / f"label-studio-{VERSION}"


def ensure_venv() -> Path:
    """The venv's Python, installing ``label-studio`` into a new venv first when there is none."""
    venv = venv_path()
    python = venv / "bin" / "python"
    if python.exists():
        return python
    partial = venv.with_name(f"{venv.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(partial)], check=True)
    subprocess.run(
        [str(partial / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"label-studio=={VERSION}"],
        check=True, preexec_fn=lambda: os.nice(10),  # leave the CPU to the tests running beside it
    )
    try:
        partial.rename(venv)
    except OSError:  # another session finished first: use its venv
        shutil.rmtree(partial, ignore_errors=True)
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running Label Studio: its URL, the API token and the process."""

    url: str
    token: str
    document_root: Path
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output (for failure messages)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and everything it started."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until the API answers (the database is initialised well after the port opens).

        Raises ``RuntimeError`` with the server's last output when it exits or does not answer in
        time (and stops it).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with code {self.process.returncode}:\n{self.log_tail()}")
            if _api_ready(self.url, self.token):
                return
            time.sleep(2)
        self.stop()
        raise RuntimeError(f"Label Studio did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")


def _api_ready(url: str, token: str) -> bool:
    request = urllib.request.Request(f"{url}/api/projects", headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _die_with_parent(parent: int) -> None:
    """In the server process: a session of its own, and SIGTERM when the test process dies (Linux)."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the fixture's stop() is the only guard
        pass
    if os.getppid() != parent:  # the test process died before prctl took effect
        os._exit(1)


def launch(workdir: Path) -> Server:
    """Start Label Studio with its data in ``workdir`` and local files under ``workdir/files``.

    Returns at once (installing the venv first if needed); :meth:`Server.wait_ready` waits for
    the API. The server is stopped by :meth:`Server.stop`, or by the kernel if the test process
    dies first.
    """
    python = ensure_venv()
    document_root = workdir / "files"
    document_root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    token = secrets.token_hex(20)
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(workdir / "data"),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
    }
    log = workdir / "label-studio.log"
    command = [
        str(python), "-m", "label_studio.server", "start", "--no-browser",
        "--host", "127.0.0.1", "--internal-host", "127.0.0.1", "--port", str(port),
        "--username", "aloe@example.org", "--password", secrets.token_hex(12), "--user-token", token,
    ]
    parent = os.getpid()
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT,
                                   preexec_fn=lambda: _die_with_parent(parent))
    return Server(f"http://127.0.0.1:{port}", token, document_root, process, log)
