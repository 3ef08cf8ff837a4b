"""A remote registry: a C2PA Soft Binding Resolution API (``kzlabel serve --registry ...``, or anyone's) as a
read-only :class:`Registry` (``http(s)://host/base`` URLs), so ``kzlabel verify --registry URL`` recovers a stripped
file's label and manifest through the standard endpoints:

``GET /matches/byBinding?alg=&value=`` (the watermark payload, base64) → ``{"matches": [{"manifestId", "endpoint"?}]}``
→ ``GET /manifests/{manifestId}`` → the manifest store (``application/c2pa``), which carries the signed label.

Plain ``urllib`` (no HTTP client dependency); answers are size-capped and time-limited; every failure is a
``RegistryError`` naming the URL. The server's answers are checked by :mod:`kzlabel.recovery`, not trusted here.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from .._version import __version__
from ..errors import RegistryError
from .base import SOFT_BINDING_ALG, Entry, Registry, binding_value, redact

__all__ = ["ResolverRegistry"]

MAX_JSON_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 64 << 20


class ResolverRegistry(Registry, schemes=("http", "https")):
    """Lookups against a remote Soft Binding Resolution API; ``timeout`` in seconds per request. Read-only."""

    writable = False

    def __init__(self, location: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        super().__init__(os.fspath(location).rstrip("/"))
        self.timeout = timeout
        if not urlsplit(self.location).netloc:
            raise RegistryError("a resolver URL needs a host (http://host:port/...)", source=redact(self.location))

    def _get(self, url: str, accept: str, limit: int) -> bytes | None:
        """The body of a GET (None on 404); any other failure is a RegistryError."""
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": f"kzlabel/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only, above
                body: bytes = resp.read(limit + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise RegistryError(f"the resolver answered {exc.code} {exc.reason}", source=redact(url)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(f"cannot reach the resolver: {reason}", source=redact(url)) from None
        if len(body) > limit:
            raise RegistryError(f"the resolver's answer is over {limit} bytes", source=redact(url))
        return body

    def _matches(self, content_id: str) -> list[dict[str, Any]]:
        query = urlencode({"alg": SOFT_BINDING_ALG, "value": binding_value(content_id), "maxResults": 1})
        url = f"{self.location}/matches/byBinding?{query}"
        body = self._get(url, "application/json", MAX_JSON_BYTES)
        try:
            matches = json.loads(body or b"{}").get("matches", [])
            if not isinstance(matches, list):
                raise TypeError
            return [m for m in matches if isinstance(m, dict) and isinstance(m.get("manifestId"), str)]
        except (ValueError, TypeError, AttributeError):
            raise RegistryError("the resolver's byBinding answer is not the API's JSON", source=redact(url)) from None

    def _manifest_from(self, endpoint: str, manifest_id: str) -> bytes | None:
        return self._get(f"{endpoint}/manifests/{quote(manifest_id, safe='')}", "application/c2pa", MAX_MANIFEST_BYTES)

    def entry(self, content_id: str) -> Entry | None:
        for match in self._matches(content_id):
            endpoint = str(match.get("endpoint") or self.location).rstrip("/")
            if urlsplit(endpoint).scheme not in ("http", "https"):
                continue  # the API lets a match point at another resolver; only an http(s) one is followed
            store = self._manifest_from(endpoint, match["manifestId"])
            if store is not None:
                return Entry(content_id, None, "", match["manifestId"], store)
        return None

    def manifest(self, manifest_id: str) -> bytes | None:
        return self._manifest_from(self.location, manifest_id)

    def record(
        self,
        content_id: str,
        token: str,
        format: str,
        manifest: bytes | None = None,
        manifest_id: str | None = None,
    ) -> None:
        raise RegistryError("a remote resolver is read-only", source=redact(self.location))

    def __len__(self) -> int:
        raise RegistryError("a remote resolver does not say how many labels it holds", source=redact(self.location))

    def close(self) -> None:
        pass  # one connection per request: nothing held
