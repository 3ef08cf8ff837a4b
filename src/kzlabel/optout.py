"""Art. 23(5): a rights-holder's machine-readable training reservation — written into every carrier a format has,
read back from all of them, and turned into one decision an AI trainer can filter a corpus with.

Carriers: C2PA ``cawg.training-mining``, XMP ``plus:DataMining`` and TDMRep (``tdm-reservation``/``tdm-policy``) in
XMP, HTML ``<meta>``, the kzlabel label's ``training`` field, kzlabel's text conventions (trailer lines, front
matter) and a site's ``/.well-known/tdmrep.json``. When carriers disagree, every signal is reported and the most
restrictive wins (not allowed > constrained > allowed), as TDMRep asks of conflicting declarations.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import formats
from .errors import KzlabelError, UnsupportedFormat
from .formats import Handler, Input, Limits
from .label import USES, Training, TrainingSignal, verify_token
from .pipeline import Source, read_input, write_atomic

__all__ = [
    "TrainingCheck",
    "TrainingPolicy",
    "check_tree",
    "read_signals",
    "signal_from_cawg",
    "signal_from_plus",
    "signal_from_tdmrep",
    "training_allowed",
    "write_optout",
    "write_well_known",
]

PLUS_VOCAB = "http://ns.useplus.org/ldf/vocab/"
TDMREP_FILE = Path(".well-known") / "tdmrep.json"

_ALIASES = {
    "ai-training": ("ai_training",),
    "training": ("ai_training",),
    "generative-training": ("ai_generative_training",),
    "ai-generative-training": ("ai_generative_training",),
    "inference": ("ai_inference",),
    "ai-inference": ("ai_inference",),
    "data-mining": ("data_mining",),
    "tdm": ("data_mining",),
    "all": USES,
}
_RANK = {Training.NOT_ALLOWED: 3, Training.CONSTRAINED: 2, Training.ALLOWED: 1, Training.UNSPECIFIED: 0}


def _parse_uses(names: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in names:
        key = raw.strip().lower().replace("_", "-")
        key = key.removeprefix("cawg.")
        uses = _ALIASES.get(key) or ((key.replace("-", "_"),) if key.replace("-", "_") in USES else None)
        if uses is None:
            known = ", ".join(sorted(_ALIASES))
            raise KzlabelError(f"unknown use {raw!r}; known: {known}")
        out.extend(u for u in uses if u not in out)
    return tuple(out)


@dataclass(frozen=True)
class TrainingPolicy:
    """What a rights-holder permits, per use; uses not mentioned stay unspecified."""

    uses: Mapping[str, Training]
    policy_url: str | None = None

    @classmethod
    def from_lists(
        cls, deny: Iterable[str] = (), allow: Iterable[str] = (), policy_url: str | None = None
    ) -> TrainingPolicy:
        denied, allowed = _parse_uses(deny), _parse_uses(allow)
        both = set(denied) & set(allowed)
        if both:
            raise KzlabelError(f"a use cannot be both denied and allowed: {', '.join(sorted(both))}")
        if not denied and not allowed:
            raise KzlabelError("say which uses to deny or allow (e.g. --deny ai-training,data-mining)")
        uses = {u: Training.NOT_ALLOWED for u in denied}
        uses.update({u: Training.ALLOWED for u in allowed})
        return cls(uses=uses, policy_url=policy_url)

    @property
    def reserved(self) -> bool:
        """TDM rights are reserved when any use is not freely allowed."""
        return any(v in (Training.NOT_ALLOWED, Training.CONSTRAINED) for v in self.uses.values())

    def tdm_reservation(self) -> str:
        return "1" if self.reserved else "0"

    def plus_data_mining(self) -> str:
        """The PLUS ``DataMining`` value that says the most this policy says."""
        no = {u for u, v in self.uses.items() if v == Training.NOT_ALLOWED}
        if "data_mining" in no:
            return PLUS_VOCAB + "DMI-PROHIBITED"
        if "ai_training" in no:
            return PLUS_VOCAB + "DMI-PROHIBITED-AIMLTRAINING"
        if "ai_generative_training" in no:
            return PLUS_VOCAB + "DMI-PROHIBITED-GENAIMLTRAINING"
        if self.reserved:
            return PLUS_VOCAB + "DMI-PROHIBITED-SEECONSTRAINT"
        if self.uses and all(v == Training.ALLOWED for v in self.uses.values()):
            return PLUS_VOCAB + "DMI-ALLOWED"
        return PLUS_VOCAB + "DMI-UNSPECIFIED"

    def cawg_entries(self) -> dict[str, dict[str, str]]:
        return {f"cawg.{u}": {"use": v.value} for u, v in self.uses.items() if v != Training.UNSPECIFIED}


# --- reading carriers ------------------------------------------------------------------------------------------------
def signal_from_tdmrep(reservation: str | int | None, policy: str | None, carrier: str) -> TrainingSignal | None:
    value = str(reservation).strip() if reservation is not None else ""
    if value == "1":
        use = Training.CONSTRAINED if policy else Training.NOT_ALLOWED
    elif value == "0":
        use = Training.ALLOWED
    else:
        return None
    return TrainingSignal(carrier, {u: use for u in USES}, f"tdm-reservation={value}", policy or None)


_PLUS_MEANING: dict[str, dict[str, Training]] = {
    "DMI-ALLOWED": {u: Training.ALLOWED for u in USES},
    "DMI-PROHIBITED": {u: Training.NOT_ALLOWED for u in USES},
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING": {u: Training.NOT_ALLOWED for u in USES},
    "DMI-PROHIBITED-AIMLTRAINING": {"ai_training": Training.NOT_ALLOWED, "ai_generative_training": Training.NOT_ALLOWED},
    "DMI-PROHIBITED-GENAIMLTRAINING": {"ai_generative_training": Training.NOT_ALLOWED},
    "DMI-PROHIBITED-SEECONSTRAINT": {u: Training.CONSTRAINED for u in USES},
    "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR": {u: Training.CONSTRAINED for u in USES},
}


def signal_from_plus(value: str | None, carrier: str = "XMP plus:DataMining") -> TrainingSignal | None:
    if not value:
        return None
    code = value.strip().rsplit("/", 1)[-1]
    uses = _PLUS_MEANING.get(code)
    return TrainingSignal(carrier, uses, value) if uses else None


def signal_from_cawg(entries: Mapping[str, Any] | None, carrier: str = "C2PA cawg.training-mining") -> TrainingSignal | None:
    if not isinstance(entries, Mapping):
        return None
    uses: dict[str, Training] = {}
    for key, entry in entries.items():
        use = str(key).removeprefix("cawg.")
        raw = entry.get("use") if isinstance(entry, Mapping) else None
        if use in USES and raw in {t.value for t in Training}:
            uses[use] = Training(raw)
    return TrainingSignal(carrier, uses, json.dumps(dict(entries), sort_keys=True)) if uses else None


# Training permissions as media-container tags (video udta/Matroska tags, ID3 TXXX, Vorbis comments, MP4 freeform
# atoms), named after their XMP properties so ffprobe and exiftool show them under a recognisable name.
TAG_TDM_RESERVATION = "tdm-reservation"
TAG_TDM_POLICY = "tdm-policy"
TAG_DATA_MINING = "DataMining"


def container_tags(policy: TrainingPolicy) -> dict[str, str]:
    """The tags that state ``policy`` in a media container."""
    tags = {TAG_DATA_MINING: policy.plus_data_mining(), TAG_TDM_RESERVATION: policy.tdm_reservation()}
    if policy.policy_url:
        tags[TAG_TDM_POLICY] = policy.policy_url
    return tags


def signals_from_tags(tags: Mapping[str, str], carrier: str = "container tag") -> list[TrainingSignal]:
    """Training statements found in container tags (keys compared case-insensitively)."""
    low = {k.lower(): v for k, v in tags.items()}
    found = [
        signal_from_plus(low.get(TAG_DATA_MINING.lower()), f"{carrier} {TAG_DATA_MINING}"),
        signal_from_tdmrep(low.get(TAG_TDM_RESERVATION), low.get(TAG_TDM_POLICY), f"{carrier} {TAG_TDM_RESERVATION}"),
    ]
    return [f for f in found if f is not None]


def read_signals(inp: Input, handler: Handler, limits: Limits = Limits(), trust: Any = None) -> list[TrainingSignal]:
    """Every training statement in the file: format carriers, the C2PA manifest, and the kzlabel label."""
    signals = list(handler.read_training(inp, limits))
    if "c2pa" in handler.layers:
        from .layers import c2pa as c2pa_layer

        if handler.mime in c2pa_layer.supported_mime_types():
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


@dataclass
class TrainingCheck:
    """The decision for one file: ``status`` for the asked use, every use's decision, and all the evidence."""

    source: str
    use: str
    status: Training
    uses: dict[str, Training]
    signals: list[TrainingSignal] = field(default_factory=list)
    conflicting: bool = False

    @property
    def allowed(self) -> bool:
        return self.status == Training.ALLOWED

    @property
    def may_not_use(self) -> bool:
        """What a trainer filters on: an explicit reservation (not allowed, or only under a licence)."""
        return self.status in (Training.NOT_ALLOWED, Training.CONSTRAINED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "use": self.use,
            "status": self.status.value,
            "uses": {k: v.value for k, v in self.uses.items()},
            "conflicting": self.conflicting,
            "signals": [s.to_dict() for s in self.signals],
        }


def decide(signals: list[TrainingSignal], use: str = "ai_training", source: str = "<bytes>") -> TrainingCheck:
    if use not in USES:
        raise KzlabelError(f"unknown use {use!r}; one of {', '.join(USES)}")
    per_use: dict[str, Training] = {}
    conflicting = False
    for u in USES:
        said = {s.uses[u] for s in signals if u in s.uses}
        per_use[u] = max(said, key=_RANK.__getitem__) if said else Training.UNSPECIFIED
        conflicting |= Training.ALLOWED in said and len(said) > 1
    return TrainingCheck(source, use, per_use[use], per_use, list(signals), conflicting)


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
    handler = formats.detect(inp)
    try:
        data = handler.write_training(inp.data, policy, limits)
    except NotImplementedError:
        raise UnsupportedFormat(
            f"{handler.name} has no carrier for training permissions yet", source=inp.source, format=handler.id
        ) from None
    if signer is not None and "c2pa" in handler.layers:
        from .layers import c2pa as c2pa_layer

        if handler.mime in c2pa_layer.supported_mime_types():
            data = c2pa_layer.sign(
                data, handler.mime, signer, label_claims=None, title=inp.name, source_type=None,
                training=policy.cawg_entries(),
            )
    if dst is not None:
        write_atomic(dst, data, mode_from=Path(dst) if in_place else None)
    return data


# --- folders and the web ---------------------------------------------------------------------------------------------
def _tdmrep_rules(root: Path) -> list[dict[str, Any]]:
    path = root / TDMREP_FILE
    if not path.is_file():
        return []
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KzlabelError(f"unreadable tdmrep.json: {exc}", source=str(path)) from None
    return [r for r in rules if isinstance(r, dict) and "location" in r] if isinstance(rules, list) else []


def _rule_for(rules: list[dict[str, Any]], location: str) -> dict[str, Any] | None:
    """TDMRep: the first rule whose location pattern matches the resource applies."""
    for rule in rules:
        pattern = str(rule["location"])
        if fnmatch.fnmatchcase(location, pattern) or location == pattern:
            return rule
    return None


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
    rules = _tdmrep_rules(base) if site_rules else []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            if path.is_symlink() or path.relative_to(base) == TDMREP_FILE:
                continue
            try:
                inp = read_input(path, limits)
                signals = read_signals(inp, formats.detect(inp), limits, trust)
            except KzlabelError as exc:
                signals = None
                error: KzlabelError | None = exc
            else:
                error = None
            rule = _rule_for(rules, "/" + path.relative_to(base).as_posix())
            site = (
                signal_from_tdmrep(rule.get("tdm-reservation"), rule.get("tdm-policy"), "tdmrep.json " + rule["location"])
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
