"""A small client for Label Studio's REST API (the standard library's ``urllib``, nothing else).

Authentication takes either kind of Label Studio token: a legacy API token (sent as
``Authorization: Token ...``) or a personal access token (a JWT refresh token, exchanged once at
``/api/token/refresh`` for an access token sent as ``Bearer ...``). Every failure becomes one
:class:`AloeError` line naming the request.
"""

from __future__ import annotations

import json
import mimetypes
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aloe.errors import AloeError

TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"
PAGE_SIZE = 1000


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_personal_access_token(token: str) -> bool:
    return token.count(".") == 2


class LabelStudio:
    """A Label Studio server at ``url`` (e.g. ``http://localhost:8080``), as one user."""

    def __init__(self, url: str, token: str | None, timeout: float = 120.0) -> None:
        token = token or os.environ.get(TOKEN_VARIABLE, "")
        if not token:
            raise AloeError(f"no Label Studio token: set {TOKEN_VARIABLE} or pass --token "
                            "(Label Studio: Account & Settings > Personal Access Token)")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AloeError(f"--url must be the server's http(s) address, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._authorization = f"Token {token}"
        if _is_personal_access_token(token):
            access = self.request("POST", "/api/token/refresh", body={"refresh": token}, authorize=False)
            self._authorization = f"Bearer {access['access']}"

    def _send(self, method: str, path: str, params: dict | None = None, data: bytes | None = None,
              content_type: str | None = None, authorize: bool = True) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if authorize:
            headers["Authorization"] = self._authorization
        request = urllib.request.Request(self.url + path + query, data=data, headers=headers, method=method)
        what = f"Label Studio {method} {path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = _one_line(exc.read().decode(errors="replace"))
            hint = " (check the token)" if exc.code in (401, 403) else ""
            raise AloeError(f"{what}: HTTP {exc.code}{hint}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AloeError(f"cannot reach Label Studio at {self.url} ({reason})") from None

    @staticmethod
    def _decode(raw: bytes, what: str) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            text = _one_line(raw.decode(errors="replace"))
            raise AloeError(f"{what}: the answer is not JSON: {text}") from None

    def request(self, method: str, path: str, params: dict | None = None, body: object = None,
                authorize: bool = True) -> Any:
        """Send one request (``body`` as JSON) and decode the JSON answer (``None`` for an empty one)."""
        data = None if body is None else json.dumps(body).encode()
        content_type = None if body is None else "application/json"
        raw = self._send(method, path, params, data, content_type, authorize)
        return self._decode(raw, f"Label Studio {method} {path}")

    def upload(self, project_id: int, path: Path) -> list[int]:
        """Upload one image file into the project as a new task; returns the new task ids."""
        boundary = secrets.token_hex(16)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                f"Content-Type: {kind}\r\n\r\n")
        data = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        where = f"/api/projects/{project_id}/import"
        raw = self._send("POST", where, {"return_task_ids": "true"}, data, f"multipart/form-data; boundary={boundary}")
        return list(self._decode(raw, f"Label Studio POST {where}").get("task_ids", []))

    def fetch(self, path: str, params: dict | None = None) -> bytes:
        """The raw body of a GET (an export in CSV, an image)."""
        return self._send("GET", path, params)

    def projects(self) -> list[dict]:
        """Every project this user can see."""
        found: list[dict] = []
        page = 1
        while True:
            answer = self.request("GET", "/api/projects", {"page": page, "page_size": PAGE_SIZE})
            if isinstance(answer, list):
                return answer
            found += answer.get("results", [])
            if not answer.get("next"):
                return found
            page += 1

    def project_named(self, title: str) -> dict | None:
        """The project titled ``title``; :class:`AloeError` when several share it."""
        matches = [p for p in self.projects() if p.get("title") == title]
        if len(matches) > 1:
            ids = ", ".join(str(p["id"]) for p in matches)
            raise AloeError(f"Label Studio has {len(matches)} projects titled {title!r} (ids {ids}); "
                            "rename all but one")
        return matches[0] if matches else None

    def export(self, project_id: int, export_type: str = "JSON", all_tasks: bool = True) -> bytes:
        """A project's export (``JSON``, ``JSON_MIN`` or ``CSV``), with unannotated tasks by default."""
        params = {"exportType": export_type, "download_all_tasks": "true" if all_tasks else "false"}
        return self.fetch(f"/api/projects/{project_id}/export", params)
