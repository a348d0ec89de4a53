"""A real Label Studio server for the round-trip tests, and the REST calls its users make.

The server runs from its own virtualenv (``scripts/test.sh`` has ``scripts/setup_env.py``
build it; its path is ``ANNOLOOP_LABEL_STUDIO_VENV``) on 127.0.0.1 with a free port, a
temporary data directory, and an admin whose e-mail, password and API token are set through
Label Studio's own environment variables. Legacy tokens are enabled because FiftyOne's
backend authenticates with ``Authorization: Token <key>``.

Scripted annotators are ordinary Label Studio users: each signs up through the
organisation's invite link (the route a team uses; open sign-up is disabled), reads its own
API token, and submits its annotations with that token, so Label Studio records who drew what.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ADMIN_EMAIL = "admin@annoloop.test"
ADMIN_PASSWORD = "annoloop-admin-pw"
ADMIN_TOKEN = "annoloop-test-admin-token"
ANNOTATOR_PASSWORD = "annoloop-annotator-pw"
# Django runs its migrations on a fresh data directory: about a minute on an idle 2-core
# machine, several when it is shared.
START_TIMEOUT_S = 600.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_studio_executable() -> Path:
    """The ``label-studio`` command of the server's virtualenv; raises when it was not built."""
    venv = os.environ.get("ANNOLOOP_LABEL_STUDIO_VENV")
    exe = Path(venv) / "bin" / "label-studio" if venv else None
    if exe is None or not exe.is_file():
        raise RuntimeError(
            f"no Label Studio server installed (ANNOLOOP_LABEL_STUDIO_VENV={venv!r}): run the "
            "tests with `bash scripts/test.sh`, which builds it, or first run "
            "`ANNOLOOP_SETUP_LABEL_STUDIO=1 source scripts/env.sh`"
        )
    return exe


@dataclass
class LabelStudioServer:
    """A running server: its URL, the admin's API token, the process and its log."""

    url: str
    api_key: str
    process: subprocess.Popen | None
    log_path: Path | None
    _annotator_tokens: dict = field(default_factory=dict)

    def request(self, method: str, path: str, token: str | None = None, **kwargs):
        """One REST call with token auth (the admin's by default); raises on an HTTP error."""
        headers = {"Authorization": f"Token {token or self.api_key}"}
        response = requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def annotator(self, email: str) -> tuple[int, str]:
        """``(user id, API token)`` of an annotator, who signs up through the invite link."""
        if email not in self._annotator_tokens:
            invite = self.request("GET", "/api/invite")["token"]
            signup = f"{self.url}/user/signup/?token={invite}"
            session = requests.Session()
            session.get(signup, timeout=60).raise_for_status()
            session.post(
                signup,
                data={
                    "email": email,
                    "password": ANNOTATOR_PASSWORD,
                    "csrfmiddlewaretoken": session.cookies["csrftoken"],
                },
                headers={"Referer": signup},
                timeout=60,
            ).raise_for_status()
            token = session.get(self.url + "/api/current-user/token", timeout=60)
            token.raise_for_status()
            key = token.json()["token"]
            user = self.request("GET", "/api/current-user/whoami", token=key)
            if user.get("email") != email:
                raise RuntimeError(f"signing up {email} failed; the session is {user.get('email')}")
            self._annotator_tokens[email] = (user["id"], key)
        return self._annotator_tokens[email]

    def stop(self) -> None:
        """End the server this helper started (by its pid) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def external_label_studio() -> LabelStudioServer | None:
    """The server named by ``ANNOLOOP_TEST_LABEL_STUDIO_URL`` / ``_API_KEY``, if both are set."""
    url = os.environ.get("ANNOLOOP_TEST_LABEL_STUDIO_URL")
    key = os.environ.get("ANNOLOOP_TEST_LABEL_STUDIO_API_KEY")
    return LabelStudioServer(url.rstrip("/"), key, None, None) if url and key else None


def _server_env(root: Path) -> dict:
    return {
        **os.environ,
        "HOME": str(root / "home"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"),
        "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
        "LABEL_STUDIO_PASSWORD": ADMIN_PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": ADMIN_TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # Offline: no look-up of the latest release on PyPI at start-up.
        "LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }


def start_label_studio(root: Path) -> LabelStudioServer:
    """Start ``label-studio`` under ``root`` and wait until ``/health`` answers."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    port = _free_port()
    log_path = root / "label-studio.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(label_studio_executable()), "start", "--no-browser", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(root / "data"), "--enable-legacy-api-token"],
            stdout=log, stderr=subprocess.STDOUT, env=_server_env(root), start_new_session=True,
        )
    server = LabelStudioServer(f"http://127.0.0.1:{port}", ADMIN_TOKEN, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"label-studio exited with {process.returncode}; see {log_path}")
        try:
            if requests.get(server.url + "/health", timeout=5).json().get("status") == "UP":
                return server
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"label-studio did not answer /health within {START_TIMEOUT_S} s; see {log_path}")
