"""The PDF warning stamp: one plate, put into the file once as a form XObject that every stamped page draws.

The plate (the warning lines on a rounded box) is laid out by reportlab once, at a reference font size, and added
to the file as one form XObject with its own resources: one embedded subset of the font, one graphics state. Each
page draws that form with a ``cm`` that scales it to the page (font size 2.2 % of the displayed page's shorter side,
narrowed until the widest line fits across it, as a plate laid out for that page would be: text width is linear in
the size) and puts it in the chosen corner of the displayed page (crop box and ``/Rotate`` honoured).

A stamped page's ``/Contents`` becomes ``[q, its own streams…, Q q <cm> /KZStamp Do Q]``: its own streams are
referenced where they are, not rewritten, and the two small streams around them are shared by every page with the
same placement. Formerly a reportlab page was merged into each page, which embedded the font (27.8 KB) on every page
and re-serialised every page's content: a 36-page PDF grew from 263 KB to 1.36 MB.

The stamp's operations stay apart from the page's own (``q <own> Q`` then the four-operation stamp block), which is
what the ``kz-pdf-1`` page binding (``formats.pdf``) relies on to bind a page's own content apart from the stamp.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import MissingDependency

__all__ = ["CORNERS", "Plate", "font_path", "placement", "plate", "stamp_pages"]

CORNERS = ("bottom-left", "bottom-right", "top-left", "top-right")
_FONT_NAME = "KZLabelSans"
_font_lock = threading.Lock()
_REF = 10.0  # the font size the plate is laid out at; pages scale it
_XOBJECT = "/KZStamp"


def font_path() -> Path:
    """A font covering Kazakh Cyrillic: the one shipped with kzlabel, else DejaVu Sans from the system."""
    assets = Path(__file__).resolve().parent.parent / "assets"
    for candidate in sorted(assets.glob("*.ttf")) + [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]:
        if candidate.is_file():
            return candidate
    raise MissingDependency("no font with Kazakh glyphs found for the PDF stamp (kzlabel's assets are missing)")


def _register_font() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    with _font_lock:
        if _FONT_NAME not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(_FONT_NAME, str(font_path())))


@dataclass(frozen=True)
class Plate:
    """The warning plate laid out at the reference size: a one-page PDF holding it at the origin, its box, the
    widest line and the border's width (the form's bounding box takes in the border's outer half)."""

    pdf: bytes
    box: tuple[float, float]
    widest: float
    line_width: float


@lru_cache(maxsize=32)
def plate(lines: tuple[str, ...]) -> Plate:
    try:
        from reportlab.pdfbase.pdfmetrics import stringWidth
        from reportlab.pdfgen import canvas
    except ImportError:
        raise MissingDependency("the PDF stamp needs reportlab: pip install reportlab") from None
    _register_font()
    size = _REF
    widest = max(stringWidth(line, _FONT_NAME, size) for line in lines)
    pad, lead = size * 0.5, size * 1.3
    box_w, box_h = widest + 2 * pad, lead * len(lines) + pad
    line_width = size * 0.08
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(box_w, box_h), pageCompression=1)
    c.setFillColorRGB(1, 0.97, 0.85, alpha=0.9)
    c.setStrokeColorRGB(0.7, 0.5, 0)
    c.setLineWidth(line_width)
    c.roundRect(0, 0, box_w, box_h, size * 0.3, stroke=1, fill=1)
    c.setFillColorRGB(0.1, 0.1, 0.1, alpha=1)
    c.setFont(_FONT_NAME, size)
    for i, line in enumerate(lines):
        c.drawString(pad, box_h - pad * 0.6 - (i + 1) * lead + size * 0.35, line)
    c.showPage()
    c.save()
    return Plate(buf.getvalue(), (box_w, box_h), widest, line_width)


def placement(shown: tuple[float, float], corner: str, lines: tuple[str, ...]) -> tuple[float, float, float]:
    """(scale, x, y): the plate's scale and lower-left corner on a displayed page of size ``shown``."""
    width, height = shown
    layout = plate(lines)
    size = max(6.0, min(width, height) * 0.022)
    room = width * 0.94 - size
    if layout.widest * size / _REF > room:
        size = max(4.0, size * room / (layout.widest * size / _REF))
    scale = size / _REF
    box_w, box_h = layout.box[0] * scale, layout.box[1] * scale
    x = size if "left" in corner else width - size - box_w
    y = size if "bottom" in corner else height - size - box_h
    return scale, x, y


def _matrix(page: Any, corner: str, lines: tuple[str, ...]) -> tuple[float, ...]:
    """The ``cm`` taking the plate to the corner of the page as displayed: scaled and moved on the displayed page,
    then turned with the page's ``/Rotate`` and shifted to its crop box."""
    box = page.cropbox
    x0, y0, w, h = float(box.left), float(box.bottom), float(box.width), float(box.height)
    rot = int(page.get("/Rotate", 0) or 0) % 360
    rot = rot if rot in (0, 90, 180, 270) else 0
    scale, x, y = placement((h, w) if rot in (90, 270) else (w, h), corner, lines)
    # displayed (X, Y) → physical (a X + c Y + e, b X + d Y + f): Rotate turns the page clockwise as shown
    a, b, c, d, e, f = {
        0: (1, 0, 0, 1, 0, 0),
        90: (0, 1, -1, 0, w, 0),
        180: (-1, 0, 0, -1, w, h),
        270: (0, -1, 1, 0, 0, h),
    }[rot]
    return (a * scale, b * scale, c * scale, d * scale, a * x + c * y + e + x0, b * x + d * y + f + y0)


def _num(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _stream(writer: Any, data: bytes) -> Any:
    from pypdf.generic import DecodedStreamObject  # lazy: pypdf loads with the first PDF

    stream = DecodedStreamObject()
    stream.set_data(data)
    return writer._add_object(stream)


def _form(writer: Any, layout: Plate) -> Any:
    """The plate as a form XObject in ``writer`` (its font and graphics state copied in once)."""
    from pypdf import PdfReader
    from pypdf.generic import ArrayObject, DecodedStreamObject, FloatObject, NameObject, NumberObject

    page = PdfReader(io.BytesIO(layout.pdf)).pages[0]
    contents = page.get_contents()
    assert contents is not None, "reportlab wrote the plate's page without content"
    form = DecodedStreamObject()
    form.set_data(contents.get_data())
    edge = layout.line_width
    form[NameObject("/Type")] = NameObject("/XObject")
    form[NameObject("/Subtype")] = NameObject("/Form")
    form[NameObject("/FormType")] = NumberObject(1)
    form[NameObject("/BBox")] = ArrayObject(
        FloatObject(round(v, 4)) for v in (-edge, -edge, layout.box[0] + edge, layout.box[1] + edge)
    )
    form[NameObject("/Resources")] = page.raw_get("/Resources").clone(writer)
    return writer._add_object(form.flate_encode())


def _xobject_name(page: Any, form: Any) -> str:
    """The name the page's resources give the form: added under ``/KZStamp`` (or ``/KZStamp1``… when another
    object holds that name). Resources shared between pages, or inherited from the page tree, are updated in place
    once for all of them."""
    from pypdf.generic import DictionaryObject, NameObject

    resources = page.get("/Resources")
    if resources is None:
        resources = DictionaryObject()
        page[NameObject("/Resources")] = resources
    resources = resources.get_object()
    xobjects = resources.get("/XObject")
    if xobjects is None:
        xobjects = DictionaryObject()
        resources[NameObject("/XObject")] = xobjects
    xobjects = xobjects.get_object()
    for n in range(len(xobjects) + 1):
        name = _XOBJECT + (str(n) if n else "")
        held = xobjects.raw_get(name) if name in xobjects else None
        if held is None:
            xobjects[NameObject(name)] = form
            return name
        if getattr(held, "idnum", None) == form.idnum:
            return name
    raise AssertionError("unreachable: a free name is always among len(xobjects) + 1 candidates")


def _own_streams(page: Any) -> list[Any]:
    """The page's content streams, as the references it holds them by."""
    from pypdf.generic import ArrayObject, IndirectObject

    if "/Contents" not in page:
        return []
    contents = page.raw_get("/Contents")
    resolved = contents.get_object() if isinstance(contents, IndirectObject) else contents
    return list(resolved) if isinstance(resolved, ArrayObject) else [contents]


def stamp_pages(writer: Any, indices: Iterable[int], lines: tuple[str, ...], corner: str) -> None:
    """Draw the plate on each page of ``writer`` listed, through one shared form XObject."""
    from pypdf.generic import ArrayObject, NameObject

    form = _form(writer, plate(lines))
    head = _stream(writer, b"q\n")
    tails: dict[tuple[str, str], Any] = {}
    for index in indices:
        page = writer.pages[index]
        name = _xobject_name(page, form)
        cm = " ".join(_num(v) for v in _matrix(page, corner, lines))
        if (name, cm) not in tails:
            tails[(name, cm)] = _stream(writer, f"\nQ q {cm} cm {name} Do Q\n".encode())
        page[NameObject("/Contents")] = ArrayObject([head, *_own_streams(page), tails[(name, cm)]])
