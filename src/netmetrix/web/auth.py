"""Who may read: HTTP basic auth against a scrypt hash, or a bearer token.

The secrets come from files or the environment (``<web password_file>``,
``token_env``, ``token_file``), never from the command line.  A password
hash is ``scrypt$N$r$p$SALT$HASH`` (base64), made by ``netmetrix
hash-password``; a verified Authorization header is remembered (by its
SHA-256) so that a dashboard refreshing every few seconds does not pay
scrypt's deliberate cost on every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from netmetrix.config import WebConfig
from netmetrix.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # about 50 ms and 16 MiB per check
REMEMBERED = 64  # verified Authorization headers kept
OPEN_PATHS = ("/healthz",)  # for load balancers, which carry no credentials


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The ``scrypt$...`` line for ``password`` (a fresh random salt unless given)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    parts = ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    return "$".join(parts)


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the ``scrypt$...`` line ``stored`` (False if malformed)."""
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        found = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(found, base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 << 20)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class Auth:
    """The credentials a request must bring: a user and password, or the token."""

    user: str = ""
    password_hash: str = ""
    token: str = ""

    def allows(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if scheme.lower() == "basic" and self.user:
            try:
                user, sep, password = base64.b64decode(value).decode("utf-8").partition(":")
            except (ValueError, binascii.Error):
                return False
            same_user = hmac.compare_digest(user.encode(), self.user.encode())
            return bool(sep) and check_password(password, self.password_hash) and same_user
        return False


def load_auth(
    web: WebConfig, source: str = "config.xml", environ: Mapping[str, str] = os.environ
) -> Auth | None:
    """The credentials ``<web>`` names, read from their files and environment; None when
    it names none.  ConfigError (``source``, then the file or variable) when one cannot
    be read."""
    if not web.has_auth:
        return None
    try:
        return _load(web, environ)
    except ValueError as exc:
        raise ConfigError([f"{source}: {exc}"]) from None


def _load(web: WebConfig, environ: Mapping[str, str]) -> Auth:
    password_hash = _read(web.password_file, "password_file") if web.password_file else ""
    if password_hash and not password_hash.startswith("scrypt$"):
        raise ValueError(
            f"<web password_file>: {web.password_file} holds no password hash; write one with"
            f" `netmetrix hash-password --output {web.password_file}`"
        )
    token = _read(web.token_file, "token_file") if web.token_file else ""
    if web.token_env:
        token = environ.get(web.token_env, "")
        if not token:
            raise ValueError(f"<web token_env>: ${web.token_env} is not set or empty")
    return Auth(user=web.user, password_hash=password_hash, token=token)


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"<web {what}>: cannot read {path}: {exc.strerror}") from exc
    if not text:
        raise ValueError(f"<web {what}>: {path} is empty")
    return text


class AuthMiddleware:
    """401 for a request without the credentials ``auth`` asks for (all pass when None)."""

    def __init__(self, app: ASGIApp, auth: Auth | None) -> None:
        self.app = app
        self.auth = auth
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.auth is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization", "")
        if self._allowed(authorization):
            await self.app(scope, receive, send)
            return
        await self._refuse(scope)(scope, receive, send)

    def _allowed(self, authorization: str) -> bool:
        assert self.auth is not None
        seen = hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).digest()
        if seen in self._verified:
            self._verified.move_to_end(seen)
            return True
        if not authorization or not self.auth.allows(authorization):
            return False
        self._verified[seen] = None
        if len(self._verified) > REMEMBERED:
            self._verified.popitem(last=False)
        return True

    def _refuse(self, scope: Scope) -> Response:
        assert self.auth is not None
        challenge = 'Basic realm="netmetrix"' if self.auth.user else 'Bearer realm="netmetrix"'
        headers = {"WWW-Authenticate": challenge}
        if str(scope["path"]).startswith("/api/"):
            body = {"error": "authentication required"}
            return JSONResponse(body, status_code=401, headers=headers)
        return PlainTextResponse("authentication required\n", status_code=401, headers=headers)
