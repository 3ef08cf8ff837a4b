"""Training-rights actions (Art. 23(5)), above the formats: write a rights-holder's reservation into every carrier a
format has, read every carrier of a file (format carriers, the C2PA manifest, the kzlabel label) into one decision,
and do the same over a folder published on the web with its ``/.well-known/tdmrep.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import formats
from ..errors import KzlabelError, UnsupportedFormat
from ..formats.base import Handler
from ..formats.sidecar import is_sidecar_companion
from ..io import Input, Limits, Source, check_destination, read_input, write_atomic
from ..label import USES, Training, TrainingSignal, verify_token
from ..layers import c2pa as c2pa_layer
from .vocab import (
    TDMREP_FILE,
    TrainingCheck,
    TrainingPolicy,
    decide,
    rule_for,
    signal_from_cawg,
    signal_from_tdmrep,
    tdmrep_rules,
)

__all__ = ["check_tree", "read_signals", "training_allowed", "write_optout", "write_well_known"]


def read_signals(inp: Input, handler: Handler, limits: Limits = Limits(), trust: Any = None) -> list[TrainingSignal]:
    """Every training statement in the file: format carriers, the C2PA manifest, and the kzlabel label."""
    signals = list(handler.read_training(inp, limits))
    if "c2pa" in handler.layers and handler.mime in c2pa_layer.supported_mime_types():
        rep = c2pa_layer.read(inp.data, handler.mime, trust)
        sig = signal_from_cawg(rep.training) if rep.present and rep.state != "invalid" else None
        if sig:
            signals.append(sig)
    if "metadata" in handler.layers:
        for carrier, token in handler.inspect(inp, limits, None).tokens:
            check = verify_token(token, trust)
            if check.ok and check.label and check.label.training != Training.UNSPECIFIED:
                t = check.label.training
                signals.append(TrainingSignal(f"kzlabel label ({carrier})", {u: t for u in USES}, t.value))
    return signals


def training_allowed(
    src: Source, *, use: str = "ai_training", name: str | None = None, limits: Limits = Limits(), trust: Any = None
) -> TrainingCheck:
    """May this file be used for ``use``? allowed / notAllowed / constrained / unspecified, with the evidence."""
    inp = read_input(src, limits, name)
    handler = formats.detect(inp)
    return decide(read_signals(inp, handler, limits, trust), use, inp.source)


# --- writing ---------------------------------------------------------------------------------------------------------
def write_optout(
    src: Source,
    dst: str | os.PathLike | None = None,
    *,
    policy: TrainingPolicy,
    signer: Any = None,
    in_place: bool = False,
    name: str | None = None,
    limits: Limits = Limits(),
) -> bytes:
    """Write ``policy`` into every carrier the format has (C2PA too when a signer is given); returns the bytes.

    Rights-holders mark their own works, so in-place is the common case, and it is an atomic replace.
    """
    if in_place:
        if not isinstance(src, (str, os.PathLike)) or dst is not None:
            raise KzlabelError("in_place=True needs a path as src and no dst")
        dst = src
    inp = read_input(src, limits, name)
    if dst is not None:
        check_destination(dst)
    handler = formats.detect(inp)
    try:
        data = handler.write_training(inp.data, policy, limits)
    except NotImplementedError:
        raise UnsupportedFormat(
            f"{handler.name} has no carrier for training permissions yet", source=inp.source, format=handler.id
        ) from None
    if signer is not None and "c2pa" in handler.layers and handler.mime in c2pa_layer.supported_mime_types():
        data = c2pa_layer.sign(
            data,
            handler.mime,
            signer,
            label_claims=None,
            title=inp.name,
            source_type=None,
            training=policy.cawg_entries(),
        )
    if dst is not None:
        write_atomic(dst, data, mode_from=Path(dst) if in_place else None)
    return data


# --- folders and the web ---------------------------------------------------------------------------------------------
def check_tree(
    root: str | os.PathLike,
    *,
    use: str = "ai_training",
    limits: Limits = Limits(),
    trust: Any = None,
    site_rules: bool = True,
) -> Iterator[tuple[Path, TrainingCheck | KzlabelError]]:
    """Each file under ``root`` (no symlinks followed) with its decision, ``/.well-known/tdmrep.json`` included."""
    base = Path(root)
    rules = tdmrep_rules(base) if site_rules else []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            if path.is_symlink() or path.relative_to(base) == TDMREP_FILE or is_sidecar_companion(path):
                continue  # a sidecar C2PA manifest belongs to the file beside it
            try:
                inp = read_input(path, limits)
                signals = read_signals(inp, formats.detect(inp), limits, trust)
            except KzlabelError as exc:
                signals = None
                error: KzlabelError | None = exc
            else:
                error = None
            rule = rule_for(rules, "/" + path.relative_to(base).as_posix())
            site = (
                signal_from_tdmrep(
                    rule.get("tdm-reservation"), rule.get("tdm-policy"), "tdmrep.json " + rule["location"]
                )
                if rule
                else None
            )
            if signals is None and site is None:
                assert error is not None
                yield path, error
                continue
            yield path, decide((signals or []) + ([site] if site else []), use, str(path))


def write_well_known(root: str | os.PathLike, *, use: str = "ai_training", limits: Limits = Limits()) -> Path:
    """Write ``/.well-known/tdmrep.json`` for a folder published on the web, from the files' own declarations."""
    base = Path(root)
    entries: list[dict[str, Any]] = []
    for path, check in check_tree(base, use=use, limits=limits, site_rules=False):
        if isinstance(check, KzlabelError) or check.status == Training.UNSPECIFIED:
            continue
        entry: dict[str, Any] = {
            "location": "/" + path.relative_to(base).as_posix(),
            "tdm-reservation": 0 if check.status == Training.ALLOWED else 1,
        }
        policy = next((s.policy for s in check.signals if s.policy), None)
        if policy:
            entry["tdm-policy"] = policy
        entries.append(entry)
    target = base / TDMREP_FILE
    target.parent.mkdir(exist_ok=True)
    write_atomic(target, (json.dumps(entries, indent=2) + "\n").encode())
    return target
