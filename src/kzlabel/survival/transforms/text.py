"""Text transformations: what platforms do to a post, a page or an API answer on the way to a reader.

Text is not re-encoded like pixels; it is normalised, cut, and copied out of its container:

- ``whitespace`` (plain text, Markdown, HTML): what a post box, a CMS or a messenger does on paste: line endings to
  LF, trailing spaces and tabs dropped, runs of blank lines collapsed to one, blank lines at both ends dropped, NFC;
- ``json-compact`` (JSON): the document parsed and written again compactly, as an API gateway or a database does;
- ``body`` (HTML): the ``<body>`` pasted into another site's page, as a CMS embedding or a feed does: the page's
  ``<head>`` and its ``<meta>`` tags are left behind;
- ``front-matter`` (Markdown): the document without its YAML front matter, which a renderer never shows, so a copy
  of what is shown never has it;
- ``as-text`` (HTML, Markdown): what a reader gets by copying the rendered page: the text without markup, as
  plain text;
- ``first-280`` (plain text): the first 280 characters, a post length or a link preview's limit.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from ...errors import CorruptInput
from . import NotApplicable, Original, Transform

__all__ = ["TRANSFORMS", "as_text_html", "as_text_markdown", "normalise_whitespace"]

SUFFIXES = {"text": ".txt", "markdown": ".md", "html": ".html", "json": ".json"}
PREVIEW_CHARS = 280


def _read(original: Original) -> str:
    try:
        return original.path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorruptInput(f"the text is not UTF-8: {exc}", source=str(original.path)) from None


def normalise_whitespace(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def _compact_json(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CorruptInput(f"not JSON: {exc}") from None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_BODY = re.compile(r"<body\b[^>]*>(.*?)(?:</body\s*>|\Z)", re.IGNORECASE | re.DOTALL)


def _body_only(text: str) -> str:
    found = _BODY.search(text)
    if found is None:
        raise NotApplicable("the page has no <body>")
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>Shared page</title>\n</head>\n<body>\n'
        f"{found.group(1).strip()}\n</body>\n</html>\n"
    )


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n.*?\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def _without_front_matter(text: str) -> str:
    if not _FRONT_MATTER.match(text):
        raise NotApplicable("the document has no front matter")
    return _FRONT_MATTER.sub("", text, count=1).lstrip("\n")


class _TextOf(HTMLParser):
    """The text a browser shows: no head, script or style; a line break at each block element."""

    _HIDDEN = frozenset({"head", "script", "style", "template", "noscript", "title"})
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "blockquote", "pre"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def as_text_html(text: str) -> str:
    parser = _TextOf()
    parser.feed(text)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line) + "\n"


_MD_MARKUP: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[*+-]\s+|\d+[.)]\s+)", re.MULTILINE), ""),  # headings, quotes, lists
    (re.compile(r"!?\[([^\]]*)\]\([^)]*\)"), r"\1"),  # links and images: their text
    (re.compile(r"(\*\*|__|\*|_|`)(\S(?:.*?\S)?)\1"), r"\2"),  # emphasis and inline code
    (re.compile(r"^```.*$\n?", re.MULTILINE), ""),  # code fences
)


def as_text_markdown(text: str) -> str:
    body = _FRONT_MATTER.sub("", text, count=1)
    for pattern, repl in _MD_MARKUP:
        body = pattern.sub(repl, body)
    return normalise_whitespace(html.unescape(body))


def _first_chars(text: str) -> str:
    if len(text) <= PREVIEW_CHARS:
        raise NotApplicable(f"the text ({len(text)} characters) is not longer than {PREVIEW_CHARS}")
    return text[:PREVIEW_CHARS]


def _rewrite(name: str, edit: Callable[[str], str], suffix: str | None = None) -> Callable[[Original, Path], Path]:
    def apply(original: Original, work: Path) -> Path:
        out = work / f"{name}{suffix or SUFFIXES.get(original.format, '.txt')}"
        out.write_text(edit(_read(original)), encoding="utf-8", newline="")
        return out

    return apply


_PLAIN, _MARKDOWN, _HTML, _JSON = (frozenset({f}) for f in ("text", "markdown", "html", "json"))

TRANSFORMS: list[Transform] = [
    Transform(
        "whitespace",
        "whitespace normalised (as a post box does)",
        _rewrite("whitespace", normalise_whitespace),
        _PLAIN | _MARKDOWN | _HTML,
    ),
    Transform("json-compact", "parsed and written again compactly", _rewrite("json-compact", _compact_json), _JSON),
    Transform("body", "<body> pasted into another page", _rewrite("body", _body_only), _HTML),
    Transform("front-matter", "without its front matter", _rewrite("front-matter", _without_front_matter), _MARKDOWN),
    Transform("as-text", "the rendered page copied as text", _rewrite("as-text", as_text_html, ".txt"), _HTML),
    Transform(
        "as-text", "the rendered document copied as text", _rewrite("as-text", as_text_markdown, ".txt"), _MARKDOWN
    ),
    Transform(
        "first-280",
        f"the first {PREVIEW_CHARS} characters (a post or preview limit)",
        _rewrite("first-280", _first_chars),
        _PLAIN,
    ),
]
