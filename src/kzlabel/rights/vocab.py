"""The training-rights vocabulary (Art. 23(5)), below the formats: what TDMRep, PLUS ``DataMining``, CAWG
``training-mining`` and container tags say, parsed into one TrainingPolicy / TrainingSignal model, and how several
signals add up to one decision (the most restrictive wins: not allowed > constrained > allowed, as TDMRep asks of
conflicting declarations). Pure parsing, no file I/O except reading a site's ``/.well-known/tdmrep.json``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KzlabelError
from ..label import USES, Training, TrainingSignal

__all__ = [
    "PLUS_VOCAB",
    "TAG_DATA_MINING",
    "TAG_TDM_POLICY",
    "TAG_TDM_RESERVATION",
    "TDMREP_FILE",
    "TrainingCheck",
    "TrainingPolicy",
    "container_tags",
    "decide",
    "rule_for",
    "signal_from_cawg",
    "signal_from_plus",
    "signal_from_tdmrep",
    "signals_from_tags",
    "tdmrep_rules",
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
    "DMI-PROHIBITED-AIMLTRAINING": {
        "ai_training": Training.NOT_ALLOWED,
        "ai_generative_training": Training.NOT_ALLOWED,
    },
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


def signal_from_cawg(
    entries: Mapping[str, Any] | None, carrier: str = "C2PA cawg.training-mining"
) -> TrainingSignal | None:
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


def tdmrep_rules(root: Path) -> list[dict[str, Any]]:
    path = root / TDMREP_FILE
    if not path.is_file():
        return []
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KzlabelError(f"unreadable tdmrep.json: {exc}", source=str(path)) from None
    return [r for r in rules if isinstance(r, dict) and "location" in r] if isinstance(rules, list) else []


def rule_for(rules: list[dict[str, Any]], location: str) -> dict[str, Any] | None:
    """TDMRep: the first rule whose location pattern matches the resource applies."""
    for rule in rules:
        pattern = str(rule["location"])
        if fnmatch.fnmatchcase(location, pattern) or location == pattern:
            return rule
    return None
