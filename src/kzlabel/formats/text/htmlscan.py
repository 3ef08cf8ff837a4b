"""A linear-time scan of an HTML page for the few elements kzlabel edits, with the stdlib parser's tokenisation.

kzlabel splices its banner and ``<meta>`` tags into the original text by character offsets, and reads them back
the same way, so where a tag starts and ends must follow one fixed tokenisation: that of ``html.parser.HTMLParser``
as in CPython 3.11 (fed the whole page, then closed), whose quirks decide what a label's digests cover. That parser
calls Python code for every tag, entity and text run (about 6 MB/s here), so this module follows its ``goahead``
loop step for step but leaves everything kzlabel does not look at -- text, character references, declarations,
processing instructions, and start and end tags of other elements -- to one compiled expression per state, which
steps over a run of them in C. Python code runs only for comments and the tags that matter (``html``, ``head``,
``body``, ``meta``, ``script``/``style``, and ``div`` where the banner may be), and each search that can fail at
the end of the page is remembered, so a page of unclosed comments costs one search, not one per comment.

The regular expressions below are the stdlib's (3.11) own; the tokenisation is pinned to them, whatever the
running Python's ``html.parser`` does, so a page's label binds the same text under every interpreter.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from html import unescape

from ...errors import CorruptInput

# html.parser (CPython 3.11), verbatim
_STARTTAGOPEN = re.compile("<[a-zA-Z]")
_CHARREF = re.compile("&#(?:[0-9]+|[xX][0-9a-fA-F]+)[^0-9a-fA-F]")
_ENTITYREF = re.compile("&([a-zA-Z][-.a-zA-Z0-9]*)[^a-zA-Z0-9]")
_INCOMPLETE = re.compile("&[a-zA-Z#]")
_TAGFIND = re.compile(r"([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*")
_ATTRFIND = re.compile(
    r"((?<=[\'\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*(\'[^\']*\'|\"[^\"]*\"|(?![\'\"])[^>\s]*))?(?:\s|/(?!>))*"
)
_LOCATE_BODY = r"""
  [a-zA-Z][^\t\n\r\f />\x00]*        # tag name
  (?:[\s/]*                          # optional whitespace before attribute name
    (?:(?<=['"\s/])[^\s/>][^\s/=>]*  # attribute name
      (?:\s*=+\s*                    # value indicator
        (?:'[^']*'                   # LITA-enclosed value
          |"[^"]*"                   # LIT-enclosed value
          |(?!['"])[^>\s]*           # bare value
         )
        \s*                          # possibly followed by a space
       )?(?:\s|/(?!>))*
     )*
   )?
  \s*                                # trailing whitespace
"""
_LOCATE = re.compile("<" + _LOCATE_BODY, re.VERBOSE)
_ENDTAGFIND = re.compile(r"</\s*([a-zA-Z][-.a-zA-Z0-9:_]*)\s*>")
_COMMENTCLOSE = re.compile(r"--\s*>")
_DECLNAME = re.compile(r"[a-zA-Z][-_.a-zA-Z0-9]*\s*")
_MARKEDCLOSE = re.compile(r"]\s*]\s*>")
_MSMARKEDCLOSE = re.compile(r"]\s*>")
_CDATA = ("script", "style")
# what _scan checked after feed(): the parser held back an unfinished tag or comment
_TRUNCATED = re.compile(r"\s*<[A-Za-z!/?]")
# an attribute named data-kzlabel may be in a tag from here on: every spelling str.lower() makes "data-kzlabel" of
# (the Kelvin sign lowers to "k")
_KZ_ATTR = re.compile("[dD][aA][tT][aA]-[kK\u212a][zZ][lL][aA][bB][eE][lL]")


def _ascii_nocase(word: str) -> str:
    """``word`` in any ASCII case: exactly the names whose str.lower() is ``word`` (no other character lowers to
    the letters of these tag names; the Kelvin sign, which lowers to "k", is in none of them)."""
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


def _skipper(start_names: tuple[str, ...], end_names: tuple[str, ...]) -> re.Pattern[str]:
    """Steps over what the parser reads without calling kzlabel: text, references, comments, declarations, PIs,
    and tags not named in ``start_names``/``end_names``. It stops where the parser would break off, at an element
    kzlabel reads, and at comments (whose searches are remembered).
    """
    starts = "|".join(_ascii_nocase(n) for n in start_names)
    ends = "|".join(_ascii_nocase(n) for n in end_names)
    parts = [  # most frequent first: text, then the plainest tags (the general forms below end them alike)
        r"[^<&]+",
        rf"</(?!(?:{ends})>)[a-zA-Z][a-zA-Z0-9]*>",
        rf"<(?!(?:{starts})[\ >])[a-zA-Z][a-zA-Z0-9]*(?:\ [a-zA-Z_:][-a-zA-Z0-9_:.]*=\"[^\"]*\")*>",
        # a start tag of another element, to where check_for_whole_start_tag ends it
        rf"(?=<[a-zA-Z])(?!<(?:{starts})(?![^\t\n\r\f />\x00]))(?><{_LOCATE_BODY})(?:>|/>|(?=[^a-zA-Z=/]))",
        # an end tag: to the first ">" whatever its form (not head/html, nor div in the banner)
        rf"</(?!\s*(?:{ends}))[^>]*>",
        r"&(?=[a-zA-Z][-.a-zA-Z0-9]*[^a-zA-Z0-9])",  # an entity reference: the rest is text to the parser
        r"&\#(?=(?:[0-9]+|[xX][0-9a-fA-F]+)[^0-9a-fA-F])",  # a character reference
        r"&(?![a-zA-Z\#])(?=.)",  # a lone "&" (not the last character)
        r"<(?![a-zA-Z/!?])(?=.)",  # a lone "<"
        r"<![^-\[>][^>]*>|<!-(?!-)[^>]*>|<!>",  # a declaration or bogus comment (not a comment, nor <![)
        r"<\?[^>]*>",  # a processing instruction
    ]
    return re.compile("(?:" + "|".join(parts) + ")*+", re.VERBOSE | re.DOTALL)


_BASE_STARTS = ("html", "head", "body", "meta", "script", "style")
_SKIP_PLAIN = _skipper(_BASE_STARTS, ("head", "html"))  # no banner to look for
_SKIP_SEEK = _skipper((*_BASE_STARTS, "div"), ("head", "html"))  # a banner may start at a <div>
_SKIP_BANNER = _skipper((*_BASE_STARTS, "div"), ("head", "html", "div"))  # inside the banner: count its divs


def _attributes(text: str, k: int, endpos: int) -> tuple[dict[str, str], int]:
    """A start tag's attributes from offset ``k`` (after its name) to ``endpos``, and where they stop."""
    attrs: dict[str, str] = {}
    while k < endpos:
        m = _ATTRFIND.match(text, k)
        if not m:
            break
        attrname, rest, value = m.group(1, 2, 3)
        if not rest:
            value = None
        elif value[:1] == "'" == value[-1:] or value[:1] == '"' == value[-1:]:
            value = value[1:-1]
        if value:
            value = unescape(value)
        attrs[attrname.lower()] = value or ""  # the last of a repeated name wins, as it did in a dict
        k = m.end()
    return attrs, k


def meta_content(text: str, start: int) -> str | None:
    """The ``content`` attribute of the start tag at ``start`` when it is a <meta> as an HTML parser reads it (not
    ``<meta!name=...>``, another element, nor a value that a lost quote turned into an attribute name), else None."""
    end = text.find(">", start)
    name = _TAGFIND.match(text, start + 1) if text.startswith("<", start) and end > 0 else None
    if name is None or name.group(1).lower() != "meta":
        return None
    return _attributes(text, name.end(), end)[0].get("content")


class _Memo:
    """A search that only moves forward: the last answer stands for every later start before it."""

    def __init__(self, text: str, pattern: re.Pattern[str]) -> None:
        self.text, self.pattern = text, pattern
        self.since = -1
        self.found: re.Match[str] | None = None  # searched from `since`; `found` is the first match (None: none)
        self.done = False

    def search(self, pos: int) -> re.Match[str] | None:
        if not self.done or pos < self.since or (self.found is not None and self.found.start() < pos):
            self.since, self.found, self.done = pos, self.pattern.search(self.text, pos), True
        return self.found


@dataclass
class HtmlScan:
    """Where kzlabel's pieces go and which are there, as character offsets into the scanned text."""

    head_open: int | None = None  # offset just after <head ...>
    head_close: int | None = None  # offset of </head>
    body_open: int | None = None  # offset just after <body ...>
    html_open: int | None = None
    html_closed: bool = False
    # (start, end, attrs, written by kzlabel?) of every <meta> whose name kzlabel reads
    metas: list[tuple[int, int, dict[str, str], bool]] = field(default_factory=list)
    banner: tuple[int, int] | None = None


class _Scanner:
    def __init__(self, text: str, source: str, meta_names: tuple[str, ...]) -> None:
        self.text, self.source = text, source
        self.meta_names = meta_names
        self.out = HtmlScan()
        self.cdata: str | None = None
        self.cdata_end: re.Pattern[str] | None = None
        self.banner_start: int | None = None
        self.div_depth = 0
        self.last_marked = text.rfind("<![")  # a malformed one is refused wherever it is
        self.kz_last = max((m.start() for m in _KZ_ATTR.finditer(text)), default=-1)
        self.memo = {
            name: _Memo(text, re.compile(p))
            for name, p in ((">", ">"), (";", ";"), ("<", "<"), ("comment", _COMMENTCLOSE.pattern))
        }
        self.memo["marked"] = _Memo(text, _MARKEDCLOSE)
        self.memo["msmarked"] = _Memo(text, _MSMARKEDCLOSE)

    def _find(self, what: str, pos: int) -> int:
        m = self.memo[what].search(pos)
        return -1 if m is None else m.start()

    # --- HTMLParser.goahead, with the run of uninteresting markup stepped over in one match ---------------------
    def goahead(self, i: int, end: bool) -> int:
        text = self.text
        n = len(text)
        while i < n:
            if end and self.cdata is None and self._find(">", i) < 0 and i > self.last_marked:
                break  # nothing without a ">" after it makes a tag, comment or declaration: the rest is text
            if self.cdata is None:
                if self.banner_start is not None:
                    skip = _SKIP_BANNER
                elif self.out.banner is None and i <= self.kz_last:
                    skip = _SKIP_SEEK
                else:
                    skip = _SKIP_PLAIN
                m = skip.match(text, i)
                i = m.end() if m else i
                if i == n:
                    break
            else:
                assert self.cdata_end is not None
                found = self.cdata_end.search(text, i)
                if not found:
                    break
                i = found.start()
            if text.startswith("<", i):
                if _STARTTAGOPEN.match(text, i):
                    k = self.parse_starttag(i)
                elif text.startswith("</", i):
                    k = self.parse_endtag(i)
                elif text.startswith("<!--", i):
                    k = self.parse_comment(i)
                elif text.startswith("<?", i):
                    gt = self._find(">", i + 2)
                    k = -1 if gt < 0 else gt + 1
                elif text.startswith("<!", i):
                    k = self.parse_html_declaration(i)
                elif i + 1 < n:
                    k = i + 1
                else:
                    break
                if k < 0:
                    if not end:
                        break
                    k = self._find(">", i + 1)
                    if k < 0:
                        k = self._find("<", i + 1)
                        k = i + 1 if k < 0 else k
                    else:
                        k += 1
                i = k
            elif text.startswith("&#", i):
                ref = _CHARREF.match(text, i)
                if ref:
                    k = ref.end()
                    i = k if text.startswith(";", k - 1) else k - 1
                    continue
                if self._find(";", i) >= 0:  # bail by consuming &#
                    i += 2
                break
            elif text.startswith("&", i):
                ref = _ENTITYREF.match(text, i)
                if ref:
                    k = ref.end()
                    i = k if text.startswith(";", k - 1) else k - 1
                    continue
                inc = _INCOMPLETE.match(text, i)
                if inc:
                    if end and inc.end() == n:
                        i += 1
                    break
                if i + 1 < n:
                    i += 1
                else:
                    break
            else:  # pragma: no cover - the expressions above stop only at "<" or "&"
                raise AssertionError("scan stopped outside markup")
        if end and i < n and self.cdata is None:
            i = n
        return i

    def parse_html_declaration(self, i: int) -> int:
        text = self.text
        if text.startswith("<![", i):
            return self.parse_marked_section(i)
        gt = self._find(">", i + 9 if text[i : i + 9].lower() == "<!doctype" else i + 2)
        return -1 if gt < 0 else gt + 1

    def parse_comment(self, i: int) -> int:
        m = self.memo["comment"].search(i + 4)
        return -1 if m is None else m.end()

    def parse_marked_section(self, i: int) -> int:
        if i + 3 == len(self.text):
            return -1
        name = _DECLNAME.match(self.text, i + 3)
        if not name:
            raise CorruptInput("HTML has a malformed <![ section", source=self.source, format="html")
        if i + 3 + len(name.group()) == len(self.text):
            return -1
        keyword = name.group().strip().lower()
        if keyword in {"temp", "cdata", "ignore", "include", "rcdata"}:
            m = self.memo["marked"].search(i + 3)
        elif keyword in {"if", "else", "endif"}:
            m = self.memo["msmarked"].search(i + 3)
        else:
            raise CorruptInput(
                f"HTML has a <![ section of unknown kind {keyword[:20]!r}", source=self.source, format="html"
            )
        return -1 if m is None else m.end()

    def check_for_whole_start_tag(self, i: int) -> int:
        m = _LOCATE.match(self.text, i)
        assert m is not None
        j = m.end()
        nxt = self.text[j : j + 1]
        if nxt == ">":
            return j + 1
        if nxt == "/":
            return j + 2 if self.text.startswith("/>", j) else -1
        if nxt == "" or nxt in "abcdefghijklmnopqrstuvwxyz=/ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            return -1
        return j

    def parse_starttag(self, i: int) -> int:
        text = self.text
        endpos = self.check_for_whole_start_tag(i)
        if endpos < 0:
            return endpos
        name = _TAGFIND.match(text, i + 1)
        assert name is not None
        tag = name.group(1).lower()
        if tag == "div" and self.banner_start is None and not _KZ_ATTR.search(text, i, endpos):
            return endpos  # no banner here, and no banner open to count it in
        attrs, k = _attributes(text, name.end(), endpos)
        close = text[k:endpos].strip()
        if close not in (">", "/>"):
            return endpos
        self.starttag(tag, attrs, i, endpos)
        if close.endswith("/>"):
            if tag == "div" and self.banner_start is not None:
                self.endtag(tag, i)
        elif tag in _CDATA:
            self.cdata = tag
            self.cdata_end = re.compile(rf"</\s*{tag}\s*>", re.I)
        return endpos

    def parse_endtag(self, i: int) -> int:
        text = self.text
        gt = self._find(">", i + 1)
        if gt < 0:
            return -1
        gtpos = gt + 1
        m = _ENDTAGFIND.match(text, i)
        if not m:
            if self.cdata is not None:
                return gtpos
            name = _TAGFIND.match(text, i + 2)
            if not name:
                return i + 3 if text.startswith("</>", i) else gtpos
            self.endtag(name.group(1).lower(), i)
            return gtpos
        elem = m.group(1).lower()
        if self.cdata is not None and elem != self.cdata:
            return gtpos
        self.endtag(elem, i)
        self.cdata = self.cdata_end = None
        return gtpos

    # --- what the old HTMLParser subclass's handlers recorded ---------------------------------------------------
    def starttag(self, tag: str, a: dict[str, str], start: int, end: int) -> None:
        out = self.out
        if tag == "html" and out.html_open is None:
            out.html_open = end
        elif tag == "head" and out.head_open is None:
            out.head_open = end
        elif tag == "body" and out.body_open is None:
            out.body_open = end
        elif tag == "meta":
            a["name"] = a.get("name", "").lower()
            if a["name"] in self.meta_names:
                out.metas.append((start, end, a, "data-kzlabel" in a))
        elif tag == "div":
            if self.banner_start is not None:
                self.div_depth += 1
            elif a.get("data-kzlabel") == "warning" and out.banner is None:
                self.banner_start, self.div_depth = start, 1

    def endtag(self, tag: str, start: int) -> None:
        out = self.out
        if tag == "head" and out.head_close is None:
            out.head_close = start
        elif tag == "html":
            out.html_closed = True
        elif tag == "div" and self.banner_start is not None:
            self.div_depth -= 1
            if self.div_depth == 0:
                out.banner = (self.banner_start, self.text.index(">", start) + 1)
                self.banner_start = None


# Marking scans the same text more than once (the page as loaded and as drawn on, the text covered and the bytes
# labelled); the last few scans are kept by the text's SHA-256, so equal text is scanned once. Results are shared:
# callers only read them.
_CACHE: OrderedDict[tuple[bytes, tuple[str, ...]], HtmlScan] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def scan_html(text: str, source: str, meta_names: tuple[str, ...]) -> HtmlScan:
    """The page's kzlabel-relevant elements; CorruptInput when it is cut off inside a tag or comment or <html>."""
    key = (hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), meta_names)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    s = _Scanner(text, source, meta_names)
    i = s.goahead(0, end=False)
    if _TRUNCATED.match(text, i):  # the parser holds back an unfinished tag or comment
        raise CorruptInput("HTML is truncated: it ends inside a tag or comment", source=source, format="html")
    s.goahead(i, end=True)  # what feed() held back (e.g. text after a bare "&#" that is no character reference)
    if s.out.html_open is not None and not s.out.html_closed:
        raise CorruptInput("HTML is truncated: <html> is never closed", source=source, format="html")
    with _CACHE_LOCK:
        _CACHE[key] = s.out
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return s.out


def clear_cache() -> None:
    """Forget the kept scans (benchmarks time a scan from nothing)."""
    with _CACHE_LOCK:
        _CACHE.clear()
