"""Who may mark: ``POST /mark`` signs with the organisation's key, so it takes a bearer token and a per-client rate
limit; verification needs neither and stays open.

* The token comes from a file that only its owner may read (``--mark-token-file``, mode 0600, like an SSH key) and is
  compared in constant time (:func:`hmac.compare_digest`). It is never logged, echoed in an error or put in a URL.
* Marking without a token is an explicit choice (``mark_without_token``), and :func:`check_exposure` refuses it on
  any address other than loopback or a Unix socket, so a key cannot be exposed to a network by a missing option.
* Each client address has a token bucket (:class:`~kzlabel.server.ratelimit.RateLimiter`); the bucket is taken from
  before the token is checked, so guessing tokens is throttled too.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import stat
from pathlib import Path

from starlette.requests import Request

from ..errors import KeyFileError
from .http import HTTPFailure
from .limits import ServiceLimits
from .ratelimit import RateLimiter

__all__ = ["MarkGate", "check_exposure", "is_local", "load_token"]

# RFC 6750's b64token alphabet, 16 to 1024 characters: `secrets.token_urlsafe(32)` gives 43
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{16,1024}=*")
_TOKEN_MAX_FILE = 4096
_CHALLENGE = 'Bearer realm="kzlabel"'


def load_token(path: Path) -> str:
    """The bearer token in ``path`` (one line); refuses a file that group or others may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot open the mark token file: {exc.strerror}", source=str(path)) from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError("the mark token file is not a regular file", source=str(path))
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"the mark token file is open to group or others (mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it",
                source=str(path),
            )
        raw = fh.read(_TOKEN_MAX_FILE + 1)
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if len(raw) > _TOKEN_MAX_FILE or not _TOKEN.fullmatch(token):
        raise KeyFileError(
            "the mark token file must hold one token of 16 to 1024 characters from A-Z a-z 0-9 . _ ~ + / - "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            source=str(path),
        )
    return token


def is_local(host: str | None, uds: Path | None = None) -> bool:
    """Whether only this machine can connect: a Unix socket, ``localhost`` or a loopback address."""
    if uds is not None:
        return True
    if host is None:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str | None, uds: Path | None, *, marking: bool, token: bool) -> None:
    """Refuse (ValueError, one line) to serve marking without a token on an address other machines can reach."""
    if marking and not token and not is_local(host, uds):
        raise ValueError(
            f"marking on {host or 'all addresses'} needs a bearer token (--mark-token-file); "
            "only a loopback host or a Unix socket may mark without one"
        )


def _client(request: Request) -> str:
    # uvicorn puts the address from X-Forwarded-For here when the connection comes from a trusted proxy
    # (--forwarded-allow-ips, loopback by default), so clients behind a local reverse proxy are told apart
    return request.client.host if request.client is not None else "unknown"


class MarkGate:
    """Admits a ``POST /mark`` request: the client's rate limit first, then its bearer token (when one is set)."""

    def __init__(self, token: str | None, limiter: RateLimiter) -> None:
        self._token = token.encode("ascii") if token is not None else None
        self.limiter = limiter

    @classmethod
    def build(cls, *, marking: bool, token: str | None, without_token: bool, limits: ServiceLimits) -> MarkGate | None:
        """The gate for a service (None when marking is off); marking needs a token unless ``without_token``."""
        if not marking:
            return None
        if token is None and not without_token:
            raise ValueError(
                "marking needs a bearer token (mark_token, --mark-token-file), or mark_without_token=True "
                "(--mark-without-token) on a loopback host"
            )
        if token is not None and not _TOKEN.fullmatch(token):
            raise ValueError("mark_token must be 16 to 1024 characters from A-Z a-z 0-9 . _ ~ + / -")
        return cls(token, RateLimiter(limits.mark_rate, limits.mark_burst))

    @property
    def authenticated(self) -> bool:
        return self._token is not None

    def admit(self, request: Request) -> None:
        """Raise the 429 or 401 this request gets, before any of its body is read."""
        wait = self.limiter.take(_client(request))
        if wait is not None:
            raise HTTPFailure(
                429,
                "rate_limited",
                f"too many marking requests from this client; retry in {wait} s",
                {"Retry-After": str(wait), "Connection": "close"},
            )
        if self._token is None:
            return
        header = request.headers.get("authorization")
        if header is None:
            raise HTTPFailure(
                401,
                "unauthorized",
                "marking needs a bearer token: send 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": _CHALLENGE, "Connection": "close"},
            )
        scheme, _, given = header.partition(" ")
        # compare_digest takes as long for any wrong token of a given length: the token is not guessed byte by byte
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            raise HTTPFailure(
                401,
                "invalid_token",
                "the bearer token is not valid for marking",
                {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"', "Connection": "close"},
            )
