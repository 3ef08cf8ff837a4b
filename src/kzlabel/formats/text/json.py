"""JSON: a top-level ``ai_label`` field holding the notice and the signed label; the rest stays byte-identical.

JSON has no comments and no metadata slot, and a line added outside the value would break every reader, so the label
is one more member of the top-level object, spliced in after its ``{``. The digests are over the canonical form
(sorted keys, no spaces), so they survive re-formatting and tell a removed ``notice`` from an edited document.
JSON Lines (one value per line) is refused: labelling it would add a record or change every record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import CorruptInput, UnsupportedFormat
from ...io import Input, Limits
from ...label import Label
from ..base import Findings, LabelMatch, MarkOptions
from .common import (
    BOM,
    TextDoc,
    TextHandler,
    encode_text,
    is_texty,
    known_notice_texts,
    stray_labels,
    strip_bom,
)

JSON_FIELD = "ai_label"
JSON_LINES_REASON = (
    "JSON Lines (one JSON value per line): a label would have to add a record or change every record, which breaks "
    "what readers of the file get, so it is not labelled"
)
_JSON_LINES_PROBE = 8  # lines parsed to tell JSON Lines from a broken JSON document


def _json_value(raw: bytes | str) -> Any:
    """The JSON value of ``raw``, or None when it is not exactly one JSON value."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _is_json_lines(text: str) -> bool:
    """Two or more non-blank lines, the first few each one complete JSON object or array (the JSON Lines shape)."""
    lines = [line for line in text.splitlines() if line.strip()]
    probe = lines[:_JSON_LINES_PROBE]
    return len(lines) > 1 and all(isinstance(_json_value(line), (dict, list)) for line in probe)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _has_notice_binding(label: Label) -> bool:
    b = label.binding or {}
    return b.get("content") != b.get("body")


class Json(TextHandler):
    """A top-level ``ai_label`` field holding the notice and the signed label; the rest stays byte-identical."""

    id = "json"
    name = "JSON"
    mime = "application/json"
    extensions = (".json",)
    # no c2pa: C2PA 2.4 defines no JSON embedding, and any carrier outside a string value breaks the JSON
    layers = frozenset({"visible", "metadata"})

    def score(self, header: bytes, name: str | None) -> int:
        """An object, or an array (one-line, pretty-printed, or JSON Lines of arrays): claimed here so that ``load``
        refuses what cannot carry the field, instead of plain text adding a notice line that breaks the JSON."""
        if not is_texty(header):
            return 0
        body = strip_bom(header).lstrip()
        if body.startswith(b"{"):
            return 70
        first = body.split(b"\n", 1)[0].strip()
        return 70 if first == b"[" or isinstance(_json_value(first), list) else 0

    def _parse(self, text: str, source: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and _is_json_lines(text):
                raise UnsupportedFormat(JSON_LINES_REASON, source=source, format=self.id) from None
            raise CorruptInput(
                f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", source=source, format=self.id
            ) from None
        except RecursionError:
            raise CorruptInput("JSON nested too deeply", source=source, format=self.id) from None
        if not isinstance(value, dict):
            raise UnsupportedFormat(
                "JSON whose top level is not an object cannot carry a label field", source=source, format=self.id
            )
        return value

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self.read_text(inp, limits)
        obj = self._parse(doc.text, inp.source)
        if JSON_FIELD in obj:  # re-marking: drop the old field, re-serialise (formatting of a labelled file is ours)
            del obj[JSON_FIELD]
            doc.text = json.dumps(obj, ensure_ascii=False, indent=2) + doc.newline
        doc.state = {"obj": obj}
        return doc

    def draw_warning(self, doc: TextDoc, label: Label, opts: MarkOptions) -> None:
        doc.state["notice"] = {lang: text for lang, text in label.notices}

    def bind(self, doc: TextDoc, out: Path) -> Mapping[str, Any]:
        obj = doc.state["obj"]
        notice = doc.state.get("notice")
        content = dict(obj, **{JSON_FIELD: {"notice": notice}}) if notice else obj
        return {"binding": {"alg": "sha256-json", "content": _sha(_canonical(content)), "body": _sha(_canonical(obj))}}

    def labelled(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        bom = text.startswith(BOM)
        text = text[1:] if bom else text
        field: dict[str, Any] = {}
        if _has_notice_binding(label):
            field["notice"] = {lang: t for lang, t in label.notices}
        field.update(
            {
                "ai_generated": True,
                "digital_source_type": label.source_type,
                "AIGC": label.aigc(token),
                "kzlabel": token,
            }
        )
        brace = text.index("{")
        after = text[brace + 1 :]
        indent = re.match(r"(\r?\n)([ \t]*)", after)
        empty = after.lstrip().startswith("}")
        encoded = json.dumps(field, ensure_ascii=False, separators=(",", ":"))
        if indent and not empty:  # pretty-printed: our field on a line of its own, same indentation
            piece = f'{indent.group(1)}{indent.group(2)}"{JSON_FIELD}": {encoded},'
        else:
            piece = f'"{JSON_FIELD}":{encoded}' + ("" if empty else ",")
        return encode_text(text[: brace + 1] + piece + after, bom)

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        doc = self.read_text(inp, limits)
        obj = self._parse(doc.text, inp.source)
        field = obj.get(JSON_FIELD)
        tokens, fields, notice = [], {}, None
        if isinstance(field, dict):
            if isinstance(field.get("kzlabel"), str):
                tokens.append((f"JSON field {JSON_FIELD}", field["kzlabel"]))
            for k in ("digital_source_type", "AIGC"):
                if k in field:
                    fields[k] = field[k]
            notice = field.get("notice")
        body = {k: v for k, v in obj.items() if k != JSON_FIELD}
        for name, value in list(body.items()):
            # the label moved out of its place (a renamed field or name): still checked, and the object holding it
            # left out of the body as kzlabel's own field is
            holder = value if isinstance(value, dict) else {name: value}
            known = [t for _, t in tokens]
            strays = [v for v in holder.values() if isinstance(v, str) and stray_labels(v, known) == [v]]
            if isinstance(field, dict) and isinstance(value, str):
                strays = []  # a top-level string beside kzlabel's own field is content
            for stray in strays:
                tokens.append((f"JSON field {name!r} (not kzlabel's)", stray))
            if strays:
                del body[name]
                if notice is None and isinstance(value, dict):
                    notice = value.get("notice")
        if isinstance(field, dict):
            for name, value in field.items():
                if (
                    name != "kzlabel"
                    and isinstance(value, str)
                    and stray_labels(value, [t for _, t in tokens]) == [value]
                ):
                    tokens.append((f"JSON field {JSON_FIELD}.{name} (not kzlabel's)", value))
        texts = known_notice_texts()
        seen = isinstance(notice, dict) and any(t in texts for t in notice.values() if isinstance(t, str))
        return Findings(tokens=tokens, fields=fields, warning_found=seen, state=(body, notice))

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        body, notice = findings.state
        binding = label.binding or {}
        if binding.get("alg") != "sha256-json":
            return LabelMatch(None, findings.warning_found, "label carries no JSON binding")
        expected = {lang: text for lang, text in label.notices}
        present = notice == expected
        content = dict(body, **{JSON_FIELD: {"notice": notice}}) if notice is not None else body
        if _sha(_canonical(content)) == binding.get("content"):
            return LabelMatch(True, present, "JSON matches the signed digest")
        if not present and _sha(_canonical(body)) == binding.get("body"):
            return LabelMatch(True, False, "JSON unchanged but the notice was removed or altered")
        return LabelMatch(False, present, "the JSON differs from the signed digest")
