"""Text formats: plain text, Markdown, HTML and JSON, each with a perceptible notice and the signed label.

One module per dialect, each with its own carrier for the label: plain.py (trailer lines at the end), markdown.py
(YAML front matter), html.py (``<meta>`` tags and a banner), json.py (a top-level ``ai_label`` field); common.py
holds what they share (decoding, the notice line, the digests binding the label to the text).

Registration order matters: detection ties go to the handler registered first, so the specific dialects (HTML,
JSON, Markdown) come before plain text, which accepts any UTF-8.
"""

from __future__ import annotations

from .. import register
from .common import WARNING_SIGN, TextDoc, TextHandler, notice_line
from .html import Html
from .json import JSON_FIELD, JSON_LINES_REASON, Json
from .markdown import Markdown
from .plain import TRAILER_PREFIX, PlainText

__all__ = [
    "JSON_FIELD",
    "JSON_LINES_REASON",
    "TRAILER_PREFIX",
    "WARNING_SIGN",
    "Html",
    "Json",
    "Markdown",
    "PlainText",
    "TextDoc",
    "TextHandler",
    "notice_line",
]

for _handler in (Html(), Json(), Markdown(), PlainText()):
    register(_handler)
