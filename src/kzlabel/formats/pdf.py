"""PDF: a warning stamped on the pages as real page content, XMP + Info-dictionary fields, and (via the pipeline)
an embedded C2PA manifest.

Changes are written as an incremental update appended to the original bytes, so earlier revisions, signatures over
them, bookmarks, forms and JavaScript (kept, never run) stay as they were. A file whose cross-reference table is
broken is rewritten in full instead (the repaired structure cannot be appended to).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from ..errors import CorruptInput, KzlabelError, LimitExceeded, MissingDependency
from ..io import Input, Limits
from ..label import NOTICES, Label, TrainingSignal
from ..layers.c2pa_embed import Slot
from ..layers.metadata import LABEL_PROPS, TRAINING_PROPS, label_values, merge_xmp, training_values, xmp_values
from ..rights.vocab import signal_from_plus, signal_from_tdmrep
from . import pdf_c2pa, register
from .base import Findings, Handler, LabelMatch, MarkOptions, rewrite
from .pdf_crypt import ENCRYPTED_PDF_C2PA, append_update, has_encrypt_entry, keep_encryption
from .pdf_stamp import CORNERS, stamp_pages

# pypdf (~70 ms to import) and reportlab are imported inside the functions that use them, so the format registry
# loading this module costs a JPEG or a text file nothing.

WARNING_SIGN = "⚠"
MAX_PAGES = 20_000
_MAX_OBJECT_ID = 1_000_000  # pypdf's own cap on an incremental writer's object numbers
# The password of the PDF being marked: set by load() for write_metadata() of the same mark() call (per thread/task),
# which clears it. It is only ever handed to pypdf to open the file, never written or reported.
_password: ContextVar[str | None] = ContextVar("kzlabel_pdf_password", default=None)
_LOCKED = "without its password nothing in it can be read or checked (label, warning, page content)"


# --- the stamp (drawn by formats.pdf_stamp) ------------------------------------------------------------------------
def _stamp_lines(label: Label) -> tuple[str, ...]:
    texts = [text for _, text in label.notices]
    return tuple([f"{WARNING_SIGN} {texts[0]}"] + texts[1:])


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _has_all(text: str, wanted: list[str]) -> bool:
    """Whether a page's text (extracted once: pypdf takes ~50 ms a page) holds every line of the warning."""
    return all(w in text for w in wanted)


# --- the handler ---------------------------------------------------------------------------------------------------
@dataclass
class PdfDoc:
    data: bytes
    reader: Any
    writer: Any
    incremental: bool
    password: str | None = None
    pages: list[int] = field(default_factory=list)
    own_ops: dict[int, int] = field(default_factory=dict)  # stamped page → operations of its own content


@lru_cache(maxsize=1)
def _pypdf() -> Any:
    """pypdf, loaded by the first PDF (not by every kzlabel command). Its complaints about damaged files are logged
    and warned; they are set to errors only / ignored once, here, rather than around every call (warning filters are
    process-wide, so toggling them per call is unsafe under the service's threads)."""
    try:
        import pypdf
    except ImportError:  # pragma: no cover - pypdf is a core dependency
        raise MissingDependency("PDF support needs pypdf") from None
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pypdf(\.|$)")
    return pypdf


def _errors() -> tuple[type[BaseException], ...]:
    """What pypdf raises on a damaged or unusual file: its own errors, and the Python errors its parsers let through
    (NotImplementedError for an unsupported filter or encoding, RecursionError for cyclic objects)."""
    errors = _pypdf().errors
    return (
        errors.PdfReadError,
        errors.PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
        NotImplementedError,
    )


def _open(data: bytes, source: str, password: str | None, limits: Limits) -> Any:
    """A pypdf reader with the failure modes translated; encrypted files need their password."""
    pypdf = _pypdf()
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # a PDF encrypted with an owner password only opens with the empty user password
            if password is None and not reader.decrypt(""):
                raise CorruptInput(f"encrypted PDF: {_LOCKED}; give its password", source=source, format="pdf")
            if password is not None and not reader.decrypt(password):
                raise CorruptInput(f"encrypted PDF: wrong password; {_LOCKED}", source=source, format="pdf")
        count = len(reader.pages)
    except KzlabelError:
        raise
    except pypdf.errors.LimitReachedError as exc:
        raise LimitExceeded(f"PDF over pypdf's safety limits: {exc}", source=source, format="pdf") from None
    except _errors() as exc:
        raise CorruptInput(f"unreadable PDF: {exc or type(exc).__name__}", source=source, format="pdf") from None
    if count == 0:
        raise CorruptInput("PDF has no pages", source=source, format="pdf")
    if count > MAX_PAGES:
        raise LimitExceeded(f"PDF has {count} pages, over the {MAX_PAGES}-page limit", source=source, format="pdf")
    return reader


def _is_encrypted(data: bytes) -> bool:
    """Whether pypdf reads the file as encrypted (False for a file it cannot read at all: load() reports that)."""
    try:
        return bool(_pypdf().PdfReader(io.BytesIO(data), strict=False).is_encrypted)
    except _errors():
        return False


def _writer(data: bytes, reader: Any, source: str) -> tuple[Any, bool]:
    """An incremental writer when the file's structure allows it, else a full copy. An encrypted file keeps its own
    encryption either way (same algorithm, permissions and passwords: formats.pdf_crypt)."""
    pypdf = _pypdf()
    try:  # an encrypted file's update is appended by append_update() (pypdf's own writer refuses to)
        writer = pypdf.PdfWriter(reader if reader.is_encrypted else io.BytesIO(data), incremental=True)
        _number_from_size(writer, reader)
        return writer, True
    except _errors():
        pass
    try:
        writer = pypdf.PdfWriter(clone_from=reader)
        if reader.is_encrypted:
            keep_encryption(writer, reader)
        return writer, False
    except _errors() as exc:
        raise CorruptInput(f"PDF cannot be rewritten: {exc}", source=source, format="pdf") from None


def _number_from_size(writer: Any, reader: Any) -> None:
    """Number an update's new objects from the file's ``/Size`` on. pypdf numbers them after the highest object its
    cross-reference sections list, which leaves out a cross-reference *stream*'s own number: the first new object
    took the number of the previous update's xref stream, and pypdf (which keeps the xref streams it has read) then
    read that object as the xref stream — the XMP packet of every file kzlabel had updated before (the stamp's
    update, then the metadata's), the stamp's font of a file marked twice."""
    try:
        size = int(reader.trailer.get("/Size", 0))
    except (TypeError, ValueError):
        return
    missing = size - 1 - len(writer._objects)
    if missing > 0 and size <= _MAX_OBJECT_ID:
        writer._objects.extend([None] * missing)
        writer._original_hash.extend([0] * missing)


def _write(writer: Any) -> bytes:
    """The writer's file; an encrypted input's copy is encrypted as the input was (:func:`_writer`)."""
    out = io.BytesIO()
    try:
        if writer.incremental and writer._reader.is_encrypted:
            append_update(writer, out)
        else:
            writer.write(out)
    except _errors() as exc:
        raise CorruptInput(f"PDF cannot be written back: {exc or type(exc).__name__}", format="pdf") from exc
    return out.getvalue()


class Pdf(Handler[PdfDoc]):
    id = "pdf"
    name = "PDF"
    mime = "application/pdf"
    extensions = (".pdf",)
    layers = frozenset({"visible", "metadata", "c2pa"})

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if b"%PDF-" in header[:1024] else 0

    # the manifest as an embedded file in an incremental update, signed and read in a stream (formats/pdf_c2pa.py)
    c2pa_streamed = True

    def c2pa_reserve(self, src: IO[bytes], dst: IO[bytes], size: int) -> Slot:
        return pdf_c2pa.reserve(src, dst, size)

    def c2pa_slot(self, content: IO[bytes]) -> Slot | None:
        return pdf_c2pa.find(content)

    def c2pa_skip_reason(self, inp: Input) -> str | None:
        # kzlabel's C2PA update appends (the signature stays intact over its revision), but C2PA names the manifest in
        # the catalog's /AF, and validators judge that change to the signed catalog (tests/test_pdf_c2pa.py)
        if re.search(rb"/FT\s*/Sig\b|/SigFlags\s+[1-3]\b|/ByteRange\s*\[", inp.data):
            return (
                "the PDF carries a digital signature: a C2PA manifest must be named in the signed catalog's /AF, a "
                "change validators flag (pyHanko: modification level OTHER), so none is embedded"
            )
        if has_encrypt_entry(inp.data) and _is_encrypted(inp.data):
            return ENCRYPTED_PDF_C2PA
        return None

    def load(self, inp: Input, limits: Limits) -> PdfDoc:
        _password.set(inp.password)
        reader = _open(inp.data, inp.source, inp.password, limits)
        writer, incremental = _writer(inp.data, reader, inp.source)
        return PdfDoc(inp.data, reader, writer, incremental, inp.password)

    def draw_warning(self, doc: PdfDoc, label: Label, opts: MarkOptions) -> None:
        corner = opts.position or "bottom-left"
        if corner not in CORNERS:
            raise KzlabelError(f"unknown corner {corner!r} for the PDF stamp")
        targets = range(len(doc.writer.pages)) if opts.pages == "all" else range(1)
        try:
            for index in targets:  # the page's own operations, bound apart from the stamp block
                doc.own_ops[index] = len(_operations(doc.writer.pages[index], doc.writer))
            stamp_pages(doc.writer, targets, _stamp_lines(label), corner)
        except _pypdf().errors.LimitReachedError as exc:
            raise LimitExceeded(f"a page is over pypdf's decompression limits: {exc}", format="pdf") from None
        except _errors() as exc:
            raise CorruptInput(f"a page cannot be stamped: {exc or type(exc).__name__}", format="pdf") from exc
        doc.pages.extend(targets)

    def encode(self, doc: PdfDoc, opts: MarkOptions, out: Path) -> None:
        out.write_bytes(_write(doc.writer) if doc.pages else doc.data)

    def bind(self, doc: PdfDoc, out: Path) -> Mapping[str, Any]:
        """The stamp recorded, and every page's own content bound to the label (read from the written file as verify
        reads it)."""
        reader = _open(out.read_bytes(), "<pdf>", doc.password, Limits())
        try:
            binding = _page_binding(reader, doc.own_ops)
        except _errors() as exc:
            raise CorruptInput(f"the written PDF does not parse: {exc or type(exc).__name__}", format="pdf") from exc
        fields: dict[str, Any] = {"binding": binding}
        if doc.pages:
            fields["warning"] = {"kind": "pdf-stamp", "pages": doc.pages}
        return fields

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        info = {"/AIGC": label.aigc_json(token), "/KZLabel": token}
        password = _password.get()
        _password.set(None)  # held no longer than the mark that gave it
        rewrite(out, lambda data: self._update(data, label_values(label, token), LABEL_PROPS, info, password))

    def _update(
        self,
        data: bytes,
        xmp: Mapping[tuple[str, str], str],
        replace: tuple[tuple[str, str], ...],
        info: Mapping[str, str],
        password: str | None,
    ) -> bytes:
        from pypdf.generic import NameObject, StreamObject, TextStringObject  # loaded by _open below

        reader = _open(data, "<pdf>", password, Limits())
        writer, _ = _writer(data, reader, "<pdf>")
        current = writer.root_object.get("/Metadata")
        old = None
        if current is not None:
            try:
                old = current.get_object().get_data()
            except _errors():
                old = None
        packet = merge_xmp(old, xmp, replace)
        stream = StreamObject()
        stream[NameObject("/Type")] = NameObject("/Metadata")
        stream[NameObject("/Subtype")] = NameObject("/XML")
        stream.set_data(packet)
        writer.root_object[NameObject("/Metadata")] = writer._add_object(stream)
        writer.add_metadata({k: TextStringObject(v) for k, v in info.items()})
        return _write(writer)

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        reader = _open(inp.data, inp.source, inp.password, limits)
        try:
            meta = reader.metadata or {}
            root = reader.trailer["/Root"]
            scripted = "/OpenAction" in root or "/JavaScript" in (root.get("/Names") or {})
        except _errors() as exc:
            raise CorruptInput(f"unreadable PDF catalogue: {exc}", source=inp.source, format=self.id) from exc
        tokens: list[tuple[str, str]] = []
        info_token = meta.get("/KZLabel")
        if isinstance(info_token, str):
            tokens.append(("PDF Info /KZLabel", info_token))
        try:
            packet = reader.xmp_metadata.stream.get_data() if reader.xmp_metadata else None
        except _errors():
            packet = None
        values = xmp_values(packet)
        if values.get("kzlabel:Label") and values["kzlabel:Label"] != info_token:
            tokens.append(("XMP kzlabel:Label", values["kzlabel:Label"]))
        fields: dict[str, Any] = {k: v for k, v in values.items() if k != "kzlabel:Label"}
        if isinstance(meta.get("/AIGC"), str):
            fields["Info:AIGC"] = meta["/AIGC"]
        if scripted:
            fields["javascript_present"] = True  # reported; kzlabel never runs it
        first = self._page_text(reader, 0)
        seen = WARNING_SIGN in first and any(t in first for t in _known_texts())
        return Findings(tokens=tokens, fields=fields, warning_found=seen, state=reader)

    @staticmethod
    def _page_text(reader: Any, index: int) -> str:
        try:
            return _norm(reader.pages[index].extract_text() or "")
        except _errors():
            return ""

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        reader = findings.state
        content, detail = _pages_match(reader, label.binding)
        warning = label.warning or {}
        pages = [p for p in warning.get("pages", []) if isinstance(p, int)]
        if warning.get("kind") != "pdf-stamp" or not pages:
            return LabelMatch(content, findings.warning_found, "; ".join(filter(None, (detail, "no stamp recorded"))))
        wanted = [_norm(line) for line in _stamp_lines(label)]
        missing = [
            p + 1 for p in pages[:50] if p >= len(reader.pages) or not _has_all(self._page_text(reader, p), wanted)
        ]
        if missing:
            seen = f"warning missing on page(s) {', '.join(map(str, missing[:10]))}"
            return LabelMatch(content, False, "; ".join(filter(None, (detail, seen))))
        return LabelMatch(content, True, "; ".join(filter(None, (detail, f"warning present on {len(pages)} page(s)"))))

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        reader = _open(inp.data, inp.source, inp.password, limits)
        try:
            packet = reader.xmp_metadata.stream.get_data() if reader.xmp_metadata else None
        except _errors():
            packet = None
        values = xmp_values(packet)
        signals = [
            signal_from_plus(values.get("plus:DataMining")),
            signal_from_tdmrep(values.get("tdm:reservation"), values.get("tdm:policy"), "XMP tdm:reservation"),
        ]
        return [s for s in signals if s is not None]

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        # no password here: a PDF that needs one is refused; one encrypted with an owner password only keeps it
        return self._update(data, training_values(policy), TRAINING_PROPS, {}, None)


# --- the content binding ---------------------------------------------------------------------------------------------
# A PDF label binds every page's own content (``alg: "kz-pdf-1"``): the parsed content-stream operations (operands
# serialised as PDF tokens, so a tool that recompresses or renumbers objects keeps them) and the decoded data of every
# XObject they draw. kzlabel's stamp is drawn as ``q <page's own operations> Q`` then the stamp's own ``q … Q``
# block (``q <cm> /KZStamp Do Q``: formats.pdf_stamp; files marked before it carry the plate's operations inline),
# whose length is recorded per page: the page's own operations are bound apart from the stamp, so removing the
# stamp reads as the warning gone, not as the page changed. ``geometry`` binds every page's media box, crop box,
# rotation and user unit (what of the drawing is shown, and how; labels before it lack the field). Not bound: fonts
# (a font swapped under unchanged text operations), annotations and form fields.
PDF_ALG = "kz-pdf-1"
# per-page digests (to name the changed page, and to accept a stamp removed from some pages) for documents up to this
# many pages (24 hex digits a page); above it only the folded digests, and a removed stamp reads as a changed page
_PAGE_DIGESTS_UP_TO = 1000


def _operations(page: Any, pdf: Any) -> list[tuple[list[Any], bytes]]:
    from pypdf.generic import ContentStream  # lazy: pypdf loads with the first PDF

    contents = page.get_contents()
    return [] if contents is None else list(ContentStream(contents, pdf).operations)


def _ops_digest(ops: list[tuple[list[Any], bytes]], page: Any) -> str:
    """SHA-256 over the operations, each operand as its PDF token, with the data of each XObject drawn (``Do``)."""
    sha = hashlib.sha256()
    xobjects = (page.get("/Resources") or {}).get("/XObject") or {}
    for operands, operator in ops:
        if operator == b"INLINE IMAGE":
            sha.update(b"BI" + hashlib.sha256(bytes(operands.get("data", b""))).digest())  # type: ignore[attr-defined]
            continue
        for operand in operands:
            buf = io.BytesIO()
            operand.write_to_stream(buf)
            sha.update(buf.getvalue() + b" ")
        sha.update(bytes(operator) + b"\n")
        if operator == b"Do" and operands and operands[0] in xobjects:
            sha.update(hashlib.sha256(xobjects[operands[0]].get_object().get_data()).digest())
    return sha.hexdigest()


def _split(ops: list[tuple[list[Any], bytes]], tail: int) -> tuple[list[Any], list[Any]]:
    """(the page's own operations, the stamp with its wrapper) of a page whose stamp block is ``tail`` operations."""
    if tail <= 0 or len(ops) < tail + 2:
        return ops, []
    end = len(ops) - tail - 1
    return ops[1:end], ops[:1] + ops[end:]


def _page_binding(reader: Any, own_ops: Mapping[int, int]) -> dict[str, Any]:
    tails: list[list[int]] = []  # run-length: [stamp block length, pages]
    owns: list[str] = []
    stamps: list[str] = []
    for index, page in enumerate(reader.pages):
        ops = _operations(page, reader)
        tail = max(len(ops) - own_ops[index] - 2, 0) if index in own_ops else 0
        own, stamp = _split(ops, tail)
        owns.append(_ops_digest(own, page))
        stamps.append(_ops_digest(stamp, page))
        if tails and tails[-1][0] == tail:
            tails[-1][1] += 1
        else:
            tails.append([tail, 1])
    binding: dict[str, Any] = {
        "alg": PDF_ALG,
        "pages": len(owns),
        "tails": tails,
        "sha256": hashlib.sha256("".join(owns).encode()).hexdigest(),
        "stamps": hashlib.sha256("".join(stamps).encode()).hexdigest(),
    }
    if len(owns) <= _PAGE_DIGESTS_UP_TO:
        binding["page_digests"] = [o[:12] + t[:12] for o, t in zip(owns, stamps, strict=True)]
    try:
        binding["geometry"] = _geometry(reader)
    except _errors():  # boxes a reader cannot make sense of as signed: left unbound, as before they were bound
        pass
    return binding


def _geometry(reader: Any) -> str:
    """SHA-256 over every page's media box, crop box, rotation and user unit (inherited values resolved): the page
    dictionary entries that decide what of the drawn content is shown, and how, apart from the operations."""
    rows = []
    for page in reader.pages:
        boxes = [round(float(v), 3) for box in (page.mediabox, page.cropbox) for v in box]
        rows.append(f"{boxes} {int(page.rotation or 0) % 360} {round(float(page.user_unit), 3)}")
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _pages_match(reader: Any, binding: Mapping[str, Any] | None) -> tuple[bool | None, str]:
    """(True: every page's own content as signed, its stamp as signed or removed; False: a page changed, was added or
    removed, or no longer parses; None: no PDF binding) and a phrase for the evidence line."""
    if not binding or binding.get("alg") != PDF_ALG:
        return None, ""
    try:
        count = int(binding["pages"])
        tails = [int(t) for t, n in binding["tails"] for _ in range(int(n))]
        per_page = [str(d) for d in binding["page_digests"]] if "page_digests" in binding else None
    except (KeyError, TypeError, ValueError):
        return False, "the signed page binding is malformed"
    if len(reader.pages) != count or len(tails) != count or (per_page is not None and len(per_page) != count):
        return False, f"{len(reader.pages)} page(s), {count} when signed"
    owns: list[str] = []
    stamps: list[str] = []
    removed = 0
    for index, (page, tail) in enumerate(zip(reader.pages, tails, strict=True)):
        try:
            ops = _operations(page, reader)
            own, stamp = _split(ops, tail)
            own_d, stamp_d = _ops_digest(own, page), _ops_digest(stamp, page)
            if per_page is None or own_d[:12] + stamp_d[:12] == per_page[index]:
                owns.append(own_d)
                stamps.append(stamp_d)
                continue
            bare = [ops[1:-1], ops] if ops[:1] and ops[0][1] == b"q" and ops[-1][1] == b"Q" else [ops]
            plain = [d for d in (_ops_digest(o, page) for o in bare) if d[:12] == per_page[index][:12]]
        except _errors() as exc:
            return False, f"page {index + 1} no longer parses ({exc or type(exc).__name__})"
        if not tail or not plain:
            if own_d[:12] == per_page[index][:12]:
                return False, f"the stamp block of page {index + 1} was altered"
            return False, f"page {index + 1} changed since signing"
        owns.append(plain[0])  # the stamp removed, the page's own content as signed
        removed += 1
    if hashlib.sha256("".join(owns).encode()).hexdigest() != binding.get("sha256"):
        return False, "a page changed since signing"
    if "geometry" in binding:  # labels written before it bound the operations only
        try:
            geometry = _geometry(reader)
        except _errors() as exc:
            return False, f"a page's boxes or rotation no longer parse ({exc or type(exc).__name__})"
        if geometry != binding["geometry"]:
            return False, "a page's size, crop box, rotation or user unit changed since signing"
    if removed:
        return True, f"page content as signed (the stamp removed from {removed} page(s))"
    if hashlib.sha256("".join(stamps).encode()).hexdigest() != binding.get("stamps"):
        return False, "a stamp block was altered"
    return True, "page content exactly as signed"


@lru_cache(maxsize=1)
def _known_texts() -> tuple[str, ...]:
    return tuple(_norm(t) for kind in NOTICES.values() for t in kind.values())


register(Pdf())
