"""The labeler settings as plain, picklable data, and the Labeler built from them once per worker.

A pool worker or a Dask task cannot be handed a live Labeler (its TrustStore and Registry hold certificates and a
SQLite connection), so the parent reduces the settings to values that rebuild them (PEM bytes, a registry path) and
each worker calls :func:`build_labeler` once. Whatever is already a plain value travels as it is: in particular the
whole :class:`~kzlabel.io.Limits` object, which is frozen and picklable, so no limit can be dropped on the way
(a hand-picked copy of its fields once lost ``max_c2pa_bytes``). The same portable form fingerprints a run's journal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import KzlabelError
from ..io import Limits
from ..keys import Signer, TrustStore, parse_certs
from ..pipeline import Labeler
from ..registry import Registry

_CONFIG_KEYS_PASSED_AS_IS = {
    "owner",
    "system",
    "system_version",
    "languages",
    "source_type",
    "training",
    "depicts_real_person",
    "producer_id",
    "layers",
    "position",
    "style",
    "thumbnail",
    "pages",
    "video_warning",
    "audio_notice",
}


def _trust_from(value: Any) -> TrustStore | None:
    """A TrustStore from what portable_config left: PEM bytes, path(s), a TrustStore, or None."""
    if value is None or isinstance(value, TrustStore):
        return value
    if isinstance(value, (bytes, bytearray)):
        return TrustStore(parse_certs(bytes(value), "<trust>", "trust bundle"))
    return TrustStore.load(value)


def _limits_from(value: Any) -> Limits | None:
    """A Limits object as it is, or one built from a dict of its fields (the form older callers pass)."""
    if isinstance(value, Mapping):
        return Limits(**value)
    if value is None or isinstance(value, Limits):
        return value
    raise KzlabelError(f"limits must be a Limits or a dict of its fields, not {type(value).__name__}")


def portable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with unpicklable values (a TrustStore, a Registry) replaced by what rebuilds them; ``limits``
    becomes (or stays) a whole Limits object."""
    out = dict(config)
    if isinstance(out.get("trust"), TrustStore):
        out["trust"] = out["trust"].pem().encode("ascii")
    if isinstance(out.get("registry"), Registry):
        out["registry"] = out["registry"].location
    if out.get("limits") is not None:
        out["limits"] = _limits_from(out["limits"])
    for k in ("layers", "languages"):
        if k in out and out[k] is not None and not isinstance(out[k], (str, list, tuple)):
            out[k] = sorted(out[k])
    return out


def build_labeler(config: Mapping[str, Any], key_dir: str | os.PathLike[str] | None) -> Labeler:
    """A Labeler from a plain dict: what a worker process builds once in its initializer.

    Keys: any ``Labeler`` keyword (owner, system, system_version, languages, source_type, training, layers, position,
    style, thumbnail, pages, video_warning, audio_notice, depicts_real_person, producer_id), plus ``watermark_key``
    (bytes or hex), ``trust`` (path(s) or PEM bytes), ``registry`` (a registry path or URL) and ``limits``
    (a Limits, or a dict of its fields).
    """
    unknown = set(config) - _CONFIG_KEYS_PASSED_AS_IS - {"watermark_key", "trust", "registry", "limits"}
    if unknown:
        raise KzlabelError(f"unknown labeler option(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {k: v for k, v in config.items() if k in _CONFIG_KEYS_PASSED_AS_IS and v is not None}
    if isinstance(kwargs.get("layers"), str):
        kwargs["layers"] = [x.strip() for x in kwargs["layers"].split(",") if x.strip()]
    if isinstance(kwargs.get("languages"), str):
        kwargs["languages"] = [x.strip() for x in kwargs["languages"].split(",") if x.strip()]
    wk = config.get("watermark_key")
    if isinstance(wk, str):
        wk = bytes.fromhex(wk)
    limits = _limits_from(config.get("limits")) or Limits()
    reg = config.get("registry")
    registry = Registry.open(os.fspath(reg)) if isinstance(reg, (str, os.PathLike)) else reg
    signer = Signer.load(key_dir) if key_dir is not None else None
    return Labeler(
        signer,
        watermark_key=wk,
        trust=_trust_from(config.get("trust")),
        registry=registry,
        limits=limits,
        **kwargs,
    )
