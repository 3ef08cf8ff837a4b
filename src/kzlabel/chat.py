"""Strings in, strings out: label a chat answer, verify one, and label a streamed answer, without files.

These wrap a :class:`~kzlabel.pipeline.Labeler` over the text dialects (the same handlers as files, so a string and a
file marked alike are read alike). For strings the default carrier is ``c2pa``: a C2PA 2.4 text manifest, invisible in
plain text (the A.8 wrapper, which survives copy-paste), instead of kzlabel's visible ``kzlabel: <JWS>`` trailer line;
the perceptible notice stays (Art. 21(2)). JSON has no C2PA text form and keeps its ``ai_label`` field.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from .errors import KzlabelError
from .formats.base import TextCarrier
from .keys import Signer, TrustStore
from .pipeline import Labeler
from .report import Report

__all__ = ["TextFormat", "TextStream", "mark_text", "verify_text"]

TextFormat = Literal["plain", "markdown", "html", "json"]
# the name given with the bytes: the dialect's extension decides detection ties (formats/text)
_NAMES: dict[str, tuple[str, str]] = {
    "plain": ("answer.txt", "text"),
    "markdown": ("answer.md", "markdown"),
    "html": ("answer.html", "html"),
    "json": ("answer.json", "json"),
}


def _name(format: str) -> tuple[str, str]:
    if format not in _NAMES:
        raise KzlabelError(f"format must be one of {', '.join(get_args(TextFormat))}, not {format!r}")
    return _NAMES[format]


def mark_text(
    text: str,
    *,
    format: TextFormat = "plain",
    signer: Signer,
    system: str,
    owner: str,
    text_carrier: TextCarrier = "c2pa",
    **options: Any,
) -> str:
    """``text`` with the notice and the signed label (``options``: Labeler settings such as languages, position).

    Raises ``KzlabelError`` when the text is not of ``format`` (e.g. ``format="json"`` for something that is not)."""
    name, want = _name(format)
    labeler = Labeler(signer, system=system, owner=owner, text_carrier=text_carrier, **options)
    result = labeler.mark(text.encode("utf-8"), name=name)
    if result.format != want:
        raise KzlabelError(f"the text reads as {result.format}, not {format}", format=result.format)
    return result.data.decode("utf-8")


def verify_text(
    text: str,
    *,
    format: TextFormat = "plain",
    trust: TrustStore | None = None,
    **options: Any,
) -> Report:
    """The report for ``text`` (verdict, evidence per layer), as ``kzlabel.verify`` gives for a file."""
    name, _ = _name(format)
    return Labeler(trust=trust, **options).verify(text.encode("utf-8"), name=name)


class TextStream:
    """A streamed answer (token by token): send :meth:`start` first (the notice), then each chunk through
    :meth:`feed`, then what :meth:`close` returns (the signed carrier, made over everything sent).

    Plain text only: the notice opens the answer and the carrier ends it, so nothing already sent changes."""

    def __init__(self, *, signer: Signer, system: str, owner: str, **options: Any) -> None:
        options.setdefault("text_carrier", "c2pa")
        self._labeler = Labeler(signer, system=system, owner=owner, position="start", **options)
        self._label = self._labeler.new_label()
        self._sent: list[str] = []
        self._closed = False

    def start(self) -> str:
        """The notice line (with its line break): what the reader sees before the first token."""
        if self._sent:
            raise KzlabelError("start() is called once, before the first chunk")
        # the text dialects are imported on first use: verifying an image never loads them (tests/test_startup.py)
        from .formats.text import notice_line

        notice = notice_line(self._label) + "\n"
        self._sent.append(notice)
        return notice

    def feed(self, chunk: str) -> str:
        """Record ``chunk`` (returned unchanged, to send on)."""
        if self._closed or not self._sent:
            raise KzlabelError("feed() needs start() first and no close() yet")
        self._sent.append(chunk)
        return chunk

    def close(self) -> str:
        """The signed carrier to append to what was sent; the whole sent text then verifies as labelled."""
        if self._closed or not self._sent:
            raise KzlabelError("close() needs start() first and is called once")
        self._closed = True
        sent = "".join(self._sent)
        marked = self._labeler.mark(sent.encode("utf-8"), name="answer.txt", label=self._label).data.decode("utf-8")
        if not marked.startswith(sent):  # the text differs from its NFC form: send the marked whole instead
            raise KzlabelError("the streamed text is not in Unicode NFC; mark it whole with mark_text()")
        return marked[len(sent) :]
