"""PDF transformations: what document platforms, mail systems and "extract pages" tools do, made with pypdf.

A re-save rewrites the whole file (new cross-reference table and object layout, the document info and catalogue
kept), as an editor or a repository's normaliser does; a page extraction builds a new document from page 1 alone,
as "extract pages" or "print to PDF" of one page does: the pages travel, the document's metadata does not.
"""

from __future__ import annotations

from pathlib import Path

from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError

from ...errors import CorruptInput
from . import Original, Transform

__all__ = ["TRANSFORMS", "first_page", "resave"]

# what pypdf raises on files it cannot parse (besides its own errors)
_READ_ERRORS = (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError)


def _reader(original: Original) -> PdfReader:
    try:
        reader = PdfReader(original.path)
        if reader.is_encrypted:
            reader.decrypt(original.password or "")
        _ = len(reader.pages)  # an unreadable page tree fails here, not half-way through a write
    except _READ_ERRORS as exc:
        raise CorruptInput(f"the PDF could not be read: {exc}", source=str(original.path)) from None
    return reader


def resave(original: Original, work: Path) -> Path:
    """The whole document written again by pypdf (decrypted when it was encrypted: the password was given)."""
    writer = PdfWriter(clone_from=_reader(original))
    out = work / "resave.pdf"
    with open(out, "wb") as fh:
        writer.write(fh)
    return out


def first_page(original: Original, work: Path) -> Path:
    """A new document holding page 1 only."""
    reader = _reader(original)
    if not reader.pages:
        raise CorruptInput("the PDF has no page", source=str(original.path))
    writer = PdfWriter()
    writer.add_page(reader.pages[0])
    out = work / "page1.pdf"
    with open(out, "wb") as fh:
        writer.write(fh)
    return out


TRANSFORMS: list[Transform] = [
    Transform("resave", "re-saved by pypdf (whole document rewritten)", resave),
    Transform("page1", "page 1 extracted into a new document", first_page),
]
