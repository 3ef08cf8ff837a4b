"""The linear HTML scanner: the same offsets as the stdlib parser it replaced, and time that grows with the page."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzlabel import Labeler
from kzlabel.errors import CorruptInput
from kzlabel.formats.text.htmlscan import clear_cache, scan_html

NAMES = ("ai-generated", "kzlabel", "digital-source-type", "aigc", "tdm-reservation", "tdm-policy")


class _Reference(HTMLParser):
    """The HTMLParser subclass kzlabel used before (kzlabel 0.x html.py), offsets from getpos()."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.text = text
        self.starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.head_open = self.head_close = self.body_open = self.html_open = None
        self.html_closed = False
        self.metas: list = []
        self.banner = None
        self.banner_start = None
        self.depth = 0

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.starts[line - 1] + col

    def handle_starttag(self, tag, attrs):
        start = self._offset()
        end = start + len(self.get_starttag_text() or "")
        a = {k: (v or "") for k, v in attrs}
        if tag == "html" and self.html_open is None:
            self.html_open = end
        elif tag == "head" and self.head_open is None:
            self.head_open = end
        elif tag == "body" and self.body_open is None:
            self.body_open = end
        elif tag == "meta":
            a["name"] = a.get("name", "").lower()
            if a["name"] in NAMES:
                self.metas.append((start, end, a, "data-kzlabel" in a))
        elif tag == "div":
            if self.banner_start is not None:
                self.depth += 1
            elif a.get("data-kzlabel") == "warning" and self.banner is None:
                self.banner_start, self.depth = start, 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "div" and self.banner_start is not None:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "head" and self.head_close is None:
            self.head_close = self._offset()
        elif tag == "html":
            self.html_closed = True
        elif tag == "div" and self.banner_start is not None:
            self.depth -= 1
            if self.depth == 0:
                self.banner = (self.banner_start, self.text.index(">", self._offset()) + 1)
                self.banner_start = None


def _reference(text: str):
    import re

    s = _Reference(text)
    try:
        s.feed(text)
        if re.match(r"\s*<[A-Za-z!/?]", s.rawdata):
            return "truncated"
        s.close()
    except AssertionError:  # the stdlib's reaction to a malformed <![ section; kzlabel refuses it as bad input
        return "malformed"
    if s.html_open is not None and not s.html_closed:
        return "truncated"
    return (s.head_open, s.head_close, s.body_open, s.html_open, s.html_closed, s.metas, s.banner)


def _fast(text: str):
    try:
        s = scan_html(text, "t.html", NAMES)
    except CorruptInput as exc:
        return "malformed" if "<![" in str(exc) else "truncated"
    return (s.head_open, s.head_close, s.body_open, s.html_open, s.html_closed, s.metas, s.banner)


ATOMS = [
    "<html>", "</html>", "<HTML lang=x>", "<head>", "</head>", "</ head >", "</head x>", "<body>", "<body/>", "</body>",
    '<meta name="kzlabel" content="a" data-kzlabel>', "<meta name=AIGC content='x'>",
    '<META NAME="tdm-reservation" CONTENT="1"/>', '<meta name="x">', '<div data-kzlabel="warning">',
    "<div data-kzlabel=warning/>", "<div>", "</div>", "<div class=x>", "</DIV>", "<p>", "</p>", '<a href="x>y">',
    '<a b ="x >', '"', "'", ">", "<", "&", "&amp;", "&#x41;", "&#xyz;", "&#", "&a", ";", " ", "\n", "\r\n", "<!--",
    "-->", "<!-- c -->", "<!x>", "<!doctype html>", "<?pi?>", "<![CDATA[x]]>", "<script>", "</script>", "<style>",
    "</style >", "<script>a<b</script>", "</", "<a", "text", "data-kzlabel", '<div title="<" data-kzlabel="warning">',
    "<br/>", "<x/y>", '<div data-kzlabel="warning" id=b>', "<span>", "</span>", "<a =b>", "= ", "/", "<![if x]>",
    "</>", "<div data-kzlabel=&#119;arning>", "<\u017fcript>", "</\u017fcript>", "<div\v>",
    '<div\tdata-\u212azlabel="warning">', '<p class="a" id="b">', "<h2 id=\"s\">",
]
CHARS = list("<>/!-\"'= a&#;x\n?[]") + ["div", "meta", "head", "html", "body", "script", "data-kzlabel", "warning"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ATOMS), max_size=30))
def test_scan_matches_the_stdlib_parser_on_markup(parts):
    text = "".join(parts)
    assert _fast(text) == _reference(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(CHARS), max_size=50))
def test_scan_matches_the_stdlib_parser_on_fragments(parts):
    text = "".join(parts)
    assert _fast(text) == _reference(text)


def test_a_malformed_marked_section_is_bad_input_not_a_crash(signer):
    # the stdlib parser raised AssertionError here, which surfaced as a kzlabel bug (exit 3)
    lab = Labeler(signer, owner="O", system="S")
    for page in (b"<html><body><![foo bar]></body></html>", b"<html><body><![ x</body></html>"):
        with pytest.raises(CorruptInput, match="<!\\["):
            lab.mark(page, name="x.html")


def _flat(n: int) -> str:
    para = '<h2 id="s">S</h2>\n<p class="t">P <a href="/x">a</a>, <b>b</b> &amp; <i>i</i> x.</p>\n'
    return "<!DOCTYPE html>\n<html><head><title>t</title></head><body>\n" + para * n + "</body></html>\n"


def _nested(n: int) -> str:
    return "<html><head></head><body>" + '<div class="d"><span>i</span>\n' * n + "</div>" * n + "</body></html>"


def _banner_open(n: int) -> str:  # an unclosed banner: every div after it is counted
    return '<html><body><div data-kzlabel="warning">' + "<div><p>x</p>" * n + "</body></html>"


def _after_bail(n: int) -> str:
    # a bare "&#" sends the rest through close(), where the stdlib searched the rest of the page again for every
    # unclosed comment (quadratic)
    return "<p>a &#xyz; b</p>" + "<!--x" * n


def _cpu(fn) -> float:
    best = float("inf")
    for _ in range(3):
        clear_cache()
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


@pytest.mark.parametrize("make", [_flat, _nested, _banner_open, _after_bail])
def test_scan_time_grows_linearly(make):
    """4x the page must cost well under 16x (quadratic) the time: the bound, 8x, leaves room for a busy machine."""
    small, big = make(4000), make(16000)
    t_small = max(_cpu(lambda: _fast(small)), 1e-3)
    t_big = _cpu(lambda: _fast(big))
    assert t_big < 8 * t_small, (make.__name__, t_small, t_big)


def test_the_linear_cases_parse_as_the_stdlib_does():
    for make in (_flat, _nested, _banner_open, _after_bail):
        text = make(50)
        assert _fast(text) == _reference(text), make.__name__
