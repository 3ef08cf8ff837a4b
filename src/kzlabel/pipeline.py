"""The mark and verify passes: format-agnostic, configured once and reused (batch jobs share one Labeler).

mark: sniff → load → visible → watermark → encode → bind → sign label → metadata → c2pa → registry → atomic write.
verify: every layer is read independently and reported as Evidence; the Report derives the verdict.

From the encoder on, the output is a file (a temp file beside ``dst``, tagged, signed into the next, the last renamed):
memory does not grow with the file and no reader sees a half-written output (formats with a C2PA slot are signed in
a stream, layers/c2pa_embed, an input's manifest in its slot kept as the parent ingredient from the store alone; for
the others the C2PA library buffers the file, up to Limits.max_c2pa_bytes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from . import formats
from .errors import CapacityError, KzlabelError, LimitExceeded, RegistryError, SigningError
from .formats.base import AudioNotice, Findings, Handler, MarkOptions, Pages, Survival, TextCarrier, VideoWarning
from .io import (
    SIDECAR_MAX,
    SPOOL_IN_RAM_MAX,
    Input,
    Limits,
    Source,
    Spool,
    check_destination,
    read_input,
    replace_atomic,
    sidecar_path,
    write_atomic,
)
from .keys import Signer, TrustStore
from .label import (
    DEFAULT_LANGUAGES,
    IPTC_TRAINED,
    Label,
    TokenCheck,
    Training,
    contradicting_fields,
    default_notices,
    sign_label,
    token_claims,
    verify_token,
)
from .layers import LAYERS, Layer, Style, c2pa_embed, c2pa_text, parse_layers
from .layers import c2pa as c2pa_layer
from .recovery import record_mark, soft_binding, watermark_evidence
from .registry import Registry
from .report import SIGNED_OK, Evidence, MarkResult, Report, Status, warning_evidence

__all__ = ["Labeler", "MarkResult"]

T = TypeVar("T")


@dataclass
class _Pass:
    """What one mark pass produced: the spooled output file and what the layers did."""

    output: Path
    label: Label
    token: str
    applied: list[Layer]
    skipped: dict[Layer, str]
    sidecar: bytes | None  # a sidecar C2PA manifest, for types the C2PA library cannot embed into
    unsigned: Path | None = None  # the output before the C2PA manifest (kept in the spool to sign again)
    soft_binding: bool = False  # the manifest claims the watermark (c2pa.watermarked + soft binding)
    prior: _Prior | None = None  # the input's own manifest, when it was asked
    survival: Survival | None = None  # the watermark after the format's standard degradation (dropped if unproven)
    store: bytes | None = None  # the C2PA manifest store signed (embedded or the sidecar), for the registry
    encoding: dict[str, str] = field(default_factory=dict)  # the handler's account of its re-encode (MarkResult)


@dataclass(frozen=True)
class _Prior:
    """The input's own C2PA manifest, asked once and handed to every signing: ``existing`` as
    ``c2pa_layer.existing_manifest`` puts it (has one?, readable?); ``parent``: the store read from its slot."""

    existing: tuple[bool, bool]
    parent: c2pa_layer.Parent | None = None
    streamed: bool = False  # the handler places this file's manifest in its slot (Handler.c2pa_streams)


def _streamed(handler: Handler, prior: _Prior | None) -> bool:
    """Whether kzlabel signs the manifest itself, data-hashed in a stream (layers/c2pa_embed): the format has a slot
    and the input either no manifest or one in its slot (kept as the ingredient from the store alone). A manifest
    only the C2PA library finds (a layout the slot walker does not walk) is kept by the library."""
    return prior is not None and prior.streamed and (prior.existing == (False, True) or prior.parent is not None)


def _c2pa_too_big(size: int, limits: Limits) -> str:
    return (
        f"{size / 1024**2:.0f} MiB is over the C2PA limit of {limits.max_c2pa_bytes / 1024**2:.0f} MiB"
        " (the C2PA library holds the whole file in memory; Limits.max_c2pa_bytes raises it)"
    )


def _guard(handler: Handler, inp: Input, stage: str, fn: Callable[..., T], *args: Any) -> T:
    """Run a handler step. A kzlabel error gets the file and format it concerns, and running out of memory is a limit;
    anything else is a bug in kzlabel (a dependency's error a handler did not translate is one too) and propagates
    unchanged: the CLI exits 3 and the service answers 500, with the cause in the traceback for the logs."""
    try:
        return fn(*args)
    except KzlabelError as exc:
        exc.source = exc.source or inp.source
        exc.format = exc.format or handler.id
        raise
    except MemoryError as exc:
        raise LimitExceeded(f"out of memory while {stage}", source=inp.source, format=handler.id) from exc


def _as_edit(label: Label) -> Label:
    """Content that already carries a C2PA manifest is edited, not created: the new manifest records the edit as a
    composite (``c2pa_layer.edit_source_type``), so the label, its XMP and its notice say the same (one file, one
    answer). Notices the caller wrote are kept."""
    edited = c2pa_layer.edit_source_type(label.source_type)
    if edited == label.source_type:
        return label
    default = label.notices == default_notices(label.languages, label.source_type)
    notices = default_notices(label.languages, edited) if default else label.notices
    return label.replace(source_type=edited, notices=notices)


class Labeler:
    """One configured labelling pass; ``kzlabel.mark()`` and ``kzlabel.verify()`` wrap a throwaway one."""

    def __init__(
        self,
        signer: Signer | None = None,
        *,
        owner: str | None = None,
        system: str | None = None,
        system_version: str = "",
        languages: Iterable[str] = DEFAULT_LANGUAGES,
        source_type: str = IPTC_TRAINED,
        training: Training | str = Training.UNSPECIFIED,
        depicts_real_person: bool = False,
        producer_id: str = "",
        layers: Iterable[str] = LAYERS,
        position: str | None = None,
        style: Style = "plate",
        watermark_key: bytes | None = None,
        thumbnail: bool = False,
        pages: Pages = "all",
        video_warning: VideoWarning = "both",
        audio_notice: AudioNotice = "tone",
        text_carrier: TextCarrier = "kzlabel",
        trust: TrustStore | None = None,
        registry: Registry | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self.signer = signer
        self.owner = owner
        self.system = system
        self.system_version = system_version
        self.languages = tuple(languages)
        self.source_type = source_type
        self.training = Training(training)
        self.depicts_real_person = depicts_real_person
        self.producer_id = producer_id
        self.options = MarkOptions(  # checks every option against its vocabulary
            layers=parse_layers(layers),
            position=position,
            style=style,
            watermark_key=watermark_key,
            thumbnail=thumbnail,
            pages=pages,
            video_warning=video_warning,
            audio_notice=audio_notice,
            text_carrier=text_carrier,
        )
        self.trust = trust
        self.registry = registry
        self.limits = limits

    # --- mark -------------------------------------------------------------------------------------------------------
    def new_label(self) -> Label:
        if not self.owner or not self.system:
            raise KzlabelError("marking needs owner= (the responsible owner/holder) and system= (the AI system)")
        return Label.create(
            owner=self.owner,
            system=self.system,
            system_version=self.system_version,
            languages=self.languages,
            source_type=self.source_type,
            depicts_real_person=self.depicts_real_person,
            training=self.training,
            producer_id=self.producer_id,
        )

    def mark(
        self,
        src: Source,
        dst: str | os.PathLike | IO[bytes] | None = None,
        *,
        in_place: bool = False,
        name: str | None = None,
        label: Label | None = None,
        password: str | None = None,
    ) -> MarkResult:
        """Label one file. The original is never touched unless ``in_place=True`` (then replaced atomically)."""
        if self.signer is None:
            raise SigningError("marking needs a signer: Signer.load(KEY_DIR) (create one with `kzlabel keygen DIR`)")
        if self.registry is not None and not self.registry.writable:
            raise RegistryError(f"{self.registry!r} is a read-only resolver: mark records in a registry of your own")
        if in_place:
            if not isinstance(src, (str, os.PathLike)) or dst is not None:
                raise KzlabelError("in_place=True needs a path as src and no dst")
            dst = src
        elif (
            isinstance(src, (str, os.PathLike))
            and isinstance(dst, (str, os.PathLike))
            and Path(dst).exists()
            and Path(dst).resolve() == Path(src).resolve()
        ):
            raise KzlabelError("dst is the source file; pass in_place=True to replace it", source=str(src))
        inp = read_input(src, self.limits, name, password)  # a path's bytes are read later, by the handler
        if isinstance(dst, (str, os.PathLike)):
            check_destination(dst)  # a missing or read-only output folder fails now, not after the work
        handler = formats.detect(inp)
        label = label or self.new_label()
        spool = Spool(dst, small=inp.size <= SPOOL_IN_RAM_MAX)
        try:
            done = self._mark_pass(handler, inp, label, spool)
            self._prove(handler, inp, done, spool)
            earlier = self._earlier_watermark(handler, inp, done)
            if earlier is not None:  # marked again with the payload already in the content, which then reads back
                spool.close()
                done = self._mark_pass(handler, inp, label.replace(content_id=earlier), spool)
                self._prove(handler, inp, done, spool)
            label, token, applied, skipped = done.label, done.token, done.applied, done.skipped
            if done.sidecar is not None:
                if isinstance(dst, (str, os.PathLike)):
                    write_atomic(sidecar_path(dst), done.sidecar)
                    applied.append("c2pa")
                    skipped.pop("c2pa", None)
                else:
                    skipped["c2pa"] += (
                        "; a sidecar manifest was made (MarkResult.c2pa_sidecar) but there is no path to write it"
                        " beside"
                    )
            if self.registry is not None and "watermark" in applied:
                record_mark(self.registry, label, token, handler.id, done.store if "c2pa" in applied else None)
            held: bytes | None = None
            where: str | None = None
            if isinstance(dst, (str, os.PathLike)):  # the spooled output lies beside dst: renamed onto it
                replace_atomic(done.output, Path(dst), Path(dst) if in_place else None)
                spool.keep(done.output)
                where = str(dst)
            elif dst is not None:
                with open(done.output, "rb") as fh:
                    shutil.copyfileobj(fh, dst, 1 << 20)
                where = str(getattr(dst, "name", "<stream>"))
            else:
                held = done.output.read_bytes()  # bytes asked for: the caller holds the whole output
        finally:
            spool.close()
        to_path = isinstance(dst, (str, os.PathLike))
        robustness: dict[Layer, str] = {}
        classes: dict[Layer, str] = {}
        if done.survival is not None:
            robustness["watermark"] = done.survival.line()
            if done.survival.size_class:
                classes["watermark"] = done.survival.size_class
        return MarkResult(
            label,
            token,
            handler.id,
            tuple(applied),
            held,
            where,
            skipped,
            done.sidecar,
            to_path,
            robustness,
            done.encoding,
            classes,
        )

    def _mark_pass(self, handler: Handler[Any], inp: Input, label: Label, spool: Spool) -> _Pass:
        """The layers in order, the output spooled from the encoder on."""
        assert self.signer is not None
        opts = self.options
        wanted = opts.layers
        skipped: dict[Layer, str] = {
            layer: f"{handler.name} has no {layer} layer" for layer in sorted(wanted - handler.layers)
        }
        layers = wanted & handler.layers
        for layer, why in handler.left_out(opts).items():
            skipped[layer], layers = why, layers - {layer}
        embed = False
        prior: _Prior | None = None  # asked once, handed to the signing (also when signing again)
        if "c2pa" in layers:
            embed = handler.mime in c2pa_layer.supported_mime_types() | c2pa_text.MIMES  # text: c2pa_text's forms
            if not embed:  # no embedding for this type: a sidecar manifest instead (mark() writes it beside dst)
                skipped["c2pa"] = f"the C2PA library cannot embed a manifest in {handler.mime}"
            else:
                # a file an embedding would break (a signed PDF) gets none: for a type it can embed into, the C2PA
                # library hashes a sidecar as if embedded, so a sidecar would not validate either
                reason = _guard(handler, inp, "reading", handler.c2pa_skip_reason, inp)
                if reason:
                    skipped["c2pa"] = reason
                    layers = layers - {"c2pa"}
                elif handler.mime not in c2pa_text.MIMES:
                    # a slot's manifest is read from the slot at any size; else the library looks within its limit
                    slot = _guard(handler, inp, "reading", handler.find_c2pa_slot, inp)
                    streams = _guard(handler, inp, "reading", handler.c2pa_streams, inp)
                    with inp.open() as content:
                        if slot is not None:
                            parent = c2pa_embed.parent(content, slot)
                            prior = _Prior((True, parent.store is not None), parent, streams)
                        elif inp.size <= self.limits.max_c2pa_bytes:
                            prior = _Prior(c2pa_layer.existing_manifest(content, handler.mime), streamed=streams)
                        elif streams:
                            prior = _Prior((False, True), streamed=True)  # larger, and no manifest in its slot
                    label = _as_edit(label) if prior and prior.existing[0] else label
        applied: list[Layer] = []
        doc = _guard(handler, inp, "decoding", handler.load, inp, self.limits)
        if "visible" in layers:
            try:
                _guard(handler, inp, "drawing the warning", handler.draw_warning, doc, label, opts)
                applied.append("visible")
            except CapacityError as exc:  # e.g. a 1×1 image: no room for a legible warning
                skipped["visible"] = exc.message
        payload = bytes.fromhex(label.content_id)  # the watermark's; bind() below adds fields, never a new id
        if "watermark" in layers:
            try:
                _guard(
                    handler, inp, "embedding the watermark", handler.embed_watermark, doc, payload, opts.watermark_key
                )
                applied.append("watermark")
            except CapacityError as exc:  # too small to carry a mark: the other layers still label the file
                skipped["watermark"] = exc.message
        out = spool.new()
        _guard(handler, inp, "encoding", handler.encode, doc, opts, out)
        encoding = dict(handler.encoding(doc))
        fields = _guard(handler, inp, "binding", handler.bind, doc, out)
        if fields:
            label = label.replace(**fields)
        survival = None
        if "watermark" in applied:
            key = opts.watermark_key
            survival = _guard(handler, inp, "degrading the marked content", handler.survival, doc, out, payload, key)
        token = sign_label(label, self.signer)
        if "metadata" in layers:
            _guard(handler, inp, "writing metadata", handler.write_metadata, out, label, token)
            applied.append("metadata")
        sidecar = store = None
        size = out.stat().st_size
        if "c2pa" in layers and size > self.limits.max_c2pa_bytes and not _streamed(handler, prior):
            skipped["c2pa"] = _c2pa_too_big(size, self.limits)
            layers = layers - {"c2pa"}
        unsigned = None
        if "c2pa" in layers:
            soft = "watermark" in applied
            signed, store = self._sign(
                handler, inp, label, token, out, spool, embed=embed, claim_watermark=soft, prior=prior
            )
            if signed is not None:
                unsigned, out = out, signed
                applied.append("c2pa")
            else:
                sidecar = store
            return _Pass(out, label, token, applied, skipped, sidecar, unsigned, soft, prior, survival, store, encoding)
        return _Pass(out, label, token, applied, skipped, sidecar, survival=survival, encoding=encoding)

    def _sign(
        self,
        handler: Handler[Any],
        inp: Input,
        label: Label,
        token: str,
        content: Path,
        spool: Spool,
        *,
        embed: bool,
        claim_watermark: bool,
        prior: _Prior | None,
    ) -> tuple[Path | None, bytes]:
        """Sign the C2PA manifest over ``content``: (the signed file, its manifest store) when embedded, (None, the
        sidecar manifest store) when the type takes none. ``claim_watermark``: the manifest claims it (soft binding);
        ``prior``: the input's own manifest (a streamed signing keeps the store from its slot as the parent)."""
        assert self.signer is not None
        signer = self.signer
        soft = soft_binding(label.content_id) if claim_watermark else None
        training = None if label.training == Training.UNSPECIFIED else label.training.value
        signed = spool.new() if embed else None
        claims: dict[str, Any] = dict(label_claims=token_claims(token), title=inp.name, source_type=label.source_type)
        claims |= dict(soft_binding=soft, training=training)

        def sign() -> bytes:
            if handler.mime in c2pa_text.MIMES:  # text: signed into its C2PA 2.4 form (always embedded)
                return c2pa_text.sign_file(content, signed, handler.mime, signer, label, token, training)
            if signed is not None and prior is not None and _streamed(handler, prior):  # placed, hashed in a stream
                reserve, parent = handler.c2pa_reserve, prior.parent
                return c2pa_embed.sign(content, signed, reserve, signer, mime=handler.mime, parent=parent, **claims)
            with contextlib.ExitStack() as files:
                return c2pa_layer.sign(
                    files.enter_context(open(content, "rb")),
                    handler.mime,
                    signer,
                    thumbnail=self.options.thumbnail,
                    parent=files.enter_context(inp.open()),
                    embed=embed,
                    dest=files.enter_context(open(signed, "w+b")) if signed is not None else None,
                    existing=prior.existing if prior else None,
                    **claims,
                )

        return signed, _guard(handler, inp, "signing the C2PA manifest", sign)

    def _prove(self, handler: Handler[Any], inp: Input, done: _Pass, spool: Spool) -> None:
        """Proof before claim: read the written output back with verify's own code and keep as applied only the
        layers it shows; the others become skipped, with what the read-back saw. A watermark that does not read back
        is not claimed by the C2PA manifest either: the manifest is signed again without it."""
        unproven = self._unproven(handler, inp, done)
        if "watermark" in unproven and done.soft_binding:
            embedded = done.sidecar is None
            content = done.unsigned if embedded else done.output
            assert content is not None
            signed, store = self._sign(
                handler,
                inp,
                done.label,
                done.token,
                content,
                spool,
                embed=embedded,
                claim_watermark=False,
                prior=done.prior,
            )
            if signed is not None:
                spool.drop(done.output)
                done.output = signed
            done.sidecar, done.store, done.soft_binding = (None if embedded else store), store, False
            unproven = {**self._unproven(handler, inp, done), "watermark": unproven["watermark"]}
        for layer, why in unproven.items():
            if layer in done.applied:
                done.applied.remove(layer)
            done.skipped[layer] = f"not proven on the written output: {why}"
        if "watermark" in unproven:
            done.survival = None  # no robustness claim for a mark that does not even read back
        if done.sidecar is not None and "c2pa" in unproven:
            done.sidecar = None  # a sidecar that does not validate is not written

    def _earlier_watermark(self, handler: Handler[Any], inp: Input, done: _Pass) -> str | None:
        """When the new watermark did not read back because the input already carries one (re-marking), that mark's
        payload: a second mark over the first makes both unreadable, so the content keeps its content id and the new
        label takes it over (the registry then maps it to the newest label)."""
        if "not proven" not in done.skipped.get("watermark", ""):
            return None
        findings = _guard(handler, inp, "reading", handler.inspect, inp, self.limits, self.options.watermark_key)
        mark = findings.watermark
        if mark is None or not mark.found or mark.payload is None or mark.payload.hex() == done.label.content_id:
            return None
        return str(mark.payload.hex())

    def _unproven(self, handler: Handler[Any], inp: Input, done: _Pass) -> dict[Layer, str]:
        """Each layer ``done`` claims (a sidecar manifest included) that the written output does not show."""
        claimed = list(done.applied) + (["c2pa"] if done.sidecar is not None and "c2pa" not in done.applied else [])
        if not claimed:
            return {}
        out = Input(path=done.output, name=inp.name, password=inp.password)
        seen = formats.detect(out)
        if seen.id != handler.id:
            return {layer: f"the output reads as {seen.name}, not {handler.name}" for layer in claimed}
        report = self._report(handler, out, sidecar=done.sidecar, watermark="watermark" in claimed)
        why: dict[Layer, str] = {}
        for layer in claimed:
            line = report.layer(layer)
            if line is None:
                why[layer] = "not read back"
            elif layer in ("c2pa", "metadata") and line.status not in SIGNED_OK:
                why[layer] = f"{line.status.value}: {line.detail}"
            elif layer == "metadata" and (report.label is None or report.label.content_id != done.label.content_id):
                why[layer] = "the label read back is not the one written"
            elif layer == "metadata" and not any(
                not str(c).startswith("c2pa:") for c in line.data.get("carriers", [])
            ):  # the metadata layer is the format's own carriers: the label inside the manifest does not prove them
                why[layer] = "the label is read only from the C2PA manifest, not from the format's own tags"
            elif layer in ("watermark", "visible") and line.status != Status.FOUND:
                why[layer] = f"{line.status.value}: {line.detail}"
            elif layer == "watermark" and line.data.get("payload") != done.label.content_id:
                got = line.data.get("payload") or "unreadable"  # None: the mark is there, its payload did not decode
                why[layer] = f"payload {got} read back, {done.label.content_id} written"
        return why

    # --- verify -----------------------------------------------------------------------------------------------------
    def verify(
        self,
        src: Source,
        *,
        name: str | None = None,
        password: str | None = None,
        sidecar: bytes | None = None,
        sidecar_name: str | None = None,
    ) -> Report:
        """Read every layer and report; raises only for unusable input (unreadable, unsupported, over limits).

        ``sidecar``: the sidecar C2PA manifest of ``src`` when it is not a file beside it (an archive member's
        ``X.c2pa``), named ``sidecar_name`` in the evidence; without it a path's ``X.c2pa`` beside it is read."""
        inp = read_input(src, self.limits, name, password)
        if sidecar is not None and len(sidecar) > SIDECAR_MAX:
            sidecar = None  # as for a file beside it: a sidecar manifest is a few KB, an absurd one is not read
        handler = formats.detect(inp)
        part = c2pa_text.pasted(inp.data, inp.name) if handler.mime in c2pa_text.MIMES else None
        name = sidecar_name or "(given)"
        report = self._report(handler, part.input if part else inp, sidecar=sidecar, sidecar_name=name)
        return part.annotate(report) if part else report  # a labelled text pasted into a longer one: its span only

    def _report(
        self,
        handler: Handler[Any],
        inp: Input,
        *,
        sidecar: bytes | None = None,
        sidecar_name: str = "(to be written)",
        watermark: bool = True,
    ) -> Report:
        """Every layer's evidence for ``inp`` read by ``handler``; ``sidecar``: a sidecar C2PA manifest that is not
        a file beside it (mark's read-back: not yet written; an archive member's), named ``sidecar_name``."""
        findings: Findings = _guard(
            handler, inp, "reading", handler.inspect, inp, self.limits, self.options.watermark_key, watermark
        )
        evidence: list[Evidence] = []
        tokens = list(findings.tokens)

        c2pa_ev = self._c2pa_evidence(handler, inp, tokens, sidecar, sidecar_name)
        if c2pa_ev is not None:
            evidence.append(c2pa_ev)

        label, meta_ev, match = self._metadata_evidence(handler, findings, tokens)
        if (
            c2pa_ev is not None
            and c2pa_ev.status == Status.INVALID
            and match is not None
            and match.content is True
            and c2pa_layer.only_binding_broken(c2pa_ev.data.get("codes", []))
        ):
            if match.exact is False:
                # the manifest is still embedded, so no re-encoder wrote this file (they drop it): its content bytes
                # were changed in place, and close to the signed content is not the signed content
                c2pa_ev.detail += (
                    f"; the content is only close to the signed label's ({match.detail}), and a re-encode would "
                    "have dropped the manifest: the content was changed in place"
                )
            else:  # a container edit, not a content edit: the manifest no longer binds the file, the label still does
                c2pa_ev = Evidence(
                    "c2pa",
                    Status.UNBOUND,
                    "signature valid, but its hard binding no longer matches the file (the container was edited; the "
                    f"content matches the signed label: {match.detail})",
                    c2pa_ev.data,
                )
                evidence[0] = c2pa_ev
        if "metadata" in handler.layers or meta_ev.status != Status.ABSENT:
            evidence.append(meta_ev)

        recovered = False
        if "watermark" in handler.layers:
            line, label, recovered = watermark_evidence(
                "watermark", findings.watermark, label, self.registry, self.trust
            )
            evidence.append(line)

        if "visible" in handler.layers:
            if match is not None and match.warning is not None:
                seen, how = match.warning, ""
            else:  # no label to compare with: what the handler saw on its own
                seen, how = findings.warning_found, findings.warning_detail
            why = "the recorded warning is missing or altered" if match is not None else "no warning found"
            evidence.append(warning_evidence("visible", seen, why, how))
        for part_name, part in findings.parts.items():  # e.g. a video's soundtrack: its own watermark and tone
            line, label, found_in_registry = watermark_evidence(
                f"watermark:{part_name}", part.watermark, label, self.registry, self.trust
            )
            evidence.append(line)
            recovered = recovered or found_in_registry
            evidence.append(warning_evidence(f"visible:{part_name}", part.warning_found, "no warning found"))
        anchored = self.trust is not None and bool(self.trust.anchors)
        return Report(inp.source, handler.id, evidence, label, recovered, trust_checked=anchored)

    def _c2pa_evidence(
        self,
        handler: Handler[Any],
        inp: Input,
        tokens: list[tuple[str, str]],
        sidecar: bytes | None = None,
        sidecar_name: str = "(to be written)",
    ) -> Evidence | None:
        if "c2pa" not in handler.layers:
            return None
        if not c2pa_layer.available():
            return Evidence("c2pa", Status.UNAVAILABLE, "c2pa-python is not installed")
        slot = _guard(handler, inp, "reading", handler.find_c2pa_slot, inp)  # read in a stream, at any size
        if inp.size > self.limits.max_c2pa_bytes and slot is None:
            if handler.c2pa_streamed:
                return Evidence("c2pa", Status.ABSENT, "no C2PA manifest (none in the container's manifest slot)")
            return Evidence("c2pa", Status.UNAVAILABLE, "not checked: " + _c2pa_too_big(inp.size, self.limits))
        side_data: dict[str, str] = {}
        with inp.open() as content:  # a file is read from disk, not copied into memory first
            if handler.mime in c2pa_text.MIMES:
                rep = c2pa_text.read(content.read().decode("utf-8", "replace"), self.trust)
            elif slot is not None:  # the store read from its slot, the hash checked in a stream
                rep = c2pa_embed.read(content, slot, self.trust)
            elif handler.mime in c2pa_layer.supported_mime_types():  # also a slot this format cannot walk
                rep = c2pa_layer.read(content, handler.mime, self.trust)
            elif sidecar is not None:  # given, not beside it: mark's read-back, or an archive member's sidecar
                rep = c2pa_layer.read(content, handler.mime, self.trust, sidecar=sidecar)
                side_data = {"sidecar": sidecar_name}
            else:  # no embedding for this type: the manifest is a sidecar file beside it, when there is one
                side = sidecar_path(inp.path) if inp.path is not None else None
                if side is None or not side.is_file() or side.stat().st_size > SIDECAR_MAX:
                    return Evidence(
                        "c2pa", Status.ABSENT, f"no sidecar C2PA manifest (none can be embedded in {handler.mime})"
                    )
                rep = c2pa_layer.read(content, handler.mime, self.trust, sidecar=side.read_bytes())
                side_data = {"sidecar": side.name}
        where = f" (sidecar {side_data['sidecar']})" if side_data else ""
        if not rep.present:  # text without a C2PA text manifest: no line (the label has its own carrier there)
            return None if handler.mime in c2pa_text.MIMES else Evidence("c2pa", Status.ABSENT, "no C2PA manifest")
        if rep.label_token:
            tokens.insert(0, ("c2pa:kz.kzlabel.label", rep.label_token))
        data = {"codes": rep.codes, **rep.summary(), **side_data}
        if rep.state == "referenced":  # found, but nothing is verified: it earns nothing in the verdict
            return Evidence("c2pa", Status.FOUND, rep.detail, {"codes": rep.codes, **rep.summary()})
        if rep.state == "invalid":
            status, detail = Status.INVALID, "manifest does not validate" + where + ": " + ", ".join(rep.codes)
            if c2pa_embed.CHANGED_IN_PLACE in rep.codes:
                detail += f" ({rep.detail})"
        elif rep.state == "trusted":
            status, detail = Status.TRUSTED, "manifest valid" + where + ", signer trusted"
        elif self.trust is not None and self.trust.anchors:
            status, detail = Status.UNTRUSTED, "manifest valid" + where + ", signer not under the given trust anchors"
        else:
            status, detail = Status.VALID, "manifest valid" + where + " (no trust anchors given)"
        return Evidence("c2pa", status, detail, data)

    def _metadata_evidence(
        self, handler: Handler, findings: Findings, tokens: list[tuple[str, str]]
    ) -> tuple[Label | None, Evidence, Any]:
        """Check every signed label found; the best one speaks for the file, any broken one is reported."""
        checks: list[tuple[str, TokenCheck]] = [(carrier, verify_token(tok, self.trust)) for carrier, tok in tokens]
        fields = dict(findings.fields)
        good = [(c, chk) for c, chk in checks if chk.ok]
        bad = [(c, chk) for c, chk in checks if not chk.ok]
        if not checks:
            if fields:
                detail = "unsigned AI-content fields: " + ", ".join(fields)
                return None, Evidence("metadata", Status.FOUND, detail, {"fields": fields}), None
            return None, Evidence("metadata", Status.ABSENT, "no machine-readable label"), None
        if bad and not good:
            carrier, chk = bad[0]
            return None, Evidence("metadata", Status.INVALID, f"{carrier}: {chk.reason}", {"fields": fields}), None
        rank = {"trusted": 0, "valid": 1, "untrusted": 2}
        carrier, chk = min(good, key=lambda item: rank[item[1].status])
        assert chk.label is not None
        label = chk.label
        data = {"carrier": carrier, "carriers": [c for c, _ in checks], "signer": chk.signer, "fields": fields}
        match = handler.check_label(findings, label)
        if match.content is not None:
            data["content"] = match.detail  # how the content compares with the label's binding
            data.update(match.data)  # e.g. "excerpt": the stretch of the signed content the file holds
        if match.content is False:
            detail = f"content changed after signing: {match.detail}"
            return label, Evidence("metadata", Status.INVALID, detail, data), match
        if bad:
            carrier_bad, chk_bad = bad[0]
            return label, Evidence("metadata", Status.INVALID, f"{carrier_bad}: {chk_bad.reason}", data), match
        contradictions = contradicting_fields(label, fields)
        if contradictions:
            detail = "unsigned fields contradict the signed label: " + "; ".join(contradictions)
            return label, Evidence("metadata", Status.INCONSISTENT, detail, data), match
        mismatched = [c for c, k in good if k.label is not None and k.label.content_id != label.content_id]
        detail = chk.reason + (f"; other labels present in {', '.join(mismatched)}" if mismatched else "")
        detail += match.excerpt_note()  # the signed content, trimmed: neither a change nor the whole
        return label, Evidence("metadata", Status(chk.status), detail, data), match
