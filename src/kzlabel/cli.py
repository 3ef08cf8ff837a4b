"""The `kzlabel` command line.

Exit codes (documented in the README): 0 compliant (and, with trust anchors given, signed by a trusted signer) /
success, 1 verified but not accepted, 2 usage or input error (bad file, unsupported format, bad key, missing output
folder), 3 internal error. Errors print one line (``kzlabel: error: ...``); no tracebacks. With ``--json`` an error
is also a JSON object on stdout, ``{"error": kind, "reason": text}``, the shape ``kzlabel serve`` answers with.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import NoReturn

import typer

from ._version import __version__
from .errors import KzlabelError, error_kind
from .layers import Layer

EXIT_OK, EXIT_NOT_COMPLIANT, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Label AI-generated content (Kazakhstan AI Law Art. 21) and verify labels.",
)


class SourceKind(str, Enum):
    generated = "generated"
    modified = "modified"


class TrainingChoice(str, Enum):
    allowed = "allowed"
    not_allowed = "not-allowed"
    unspecified = "unspecified"


class UsageProblem(Exception):
    """A command line that cannot be run as given (options missing or contradicting); main() prints it."""


def _fail(message: str) -> NoReturn:
    raise UsageProblem(message)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def keygen(
    directory: Path = typer.Argument(..., help="Folder for signing.key (0600), chain.pem and trust.pem."),
    alg: str = typer.Option("ed25519", help="ed25519 or es256."),
    name: str = typer.Option("kzlabel signer", help="Certificate common name."),
    org: str | None = typer.Option(None, help="Organisation in the certificate (the owner/holder)."),
    force: bool = typer.Option(False, help="Overwrite an existing key."),
) -> None:
    """Create a signing key and a C2PA-valid certificate chain, plus the trust bundle verifiers need."""
    from .keys import generate

    paths = generate(directory, alg=alg, common_name=name, organization=org, overwrite=force)
    typer.echo(f"signing key  {paths.key}  (mode 0600; keep it secret)")
    typer.echo(f"chain        {paths.chain}")
    typer.echo(f"trust bundle {paths.trust}  (give this to verifiers: --trust)")


@app.command()
def mark(
    src: Path = typer.Argument(..., help="File to label."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Where to write the labelled file."),
    in_place: bool = typer.Option(False, "--in-place", help="Replace SRC atomically instead of writing -o."),
    key: Path = typer.Option(..., "--key", envvar="KZLABEL_KEY", help="keygen folder (or key file) to sign with."),
    system: str = typer.Option(..., "--system", envvar="KZLABEL_SYSTEM", help="AI system name."),
    system_version: str = typer.Option("", "--system-version", envvar="KZLABEL_SYSTEM_VERSION"),
    owner: str = typer.Option(..., "--owner", envvar="KZLABEL_OWNER", help="Owner/holder responsible (Art. 21(3))."),
    lang: list[str] | None = typer.Option(None, "--lang", help="Notice languages, e.g. kk,ru,en (default)."),
    kind: SourceKind = typer.Option(SourceKind.generated, "--kind", help="generated, or modified (AI edit)."),
    training: TrainingChoice = typer.Option(TrainingChoice.unspecified, "--training"),
    real_person: bool = typer.Option(False, "--real-person", help="The content depicts a real person."),
    layers: list[str] | None = typer.Option(None, "--layers", help="Subset of c2pa,metadata,watermark,visible."),
    position: str | None = typer.Option(
        None,
        "--position",
        help="Text: start|end; audio: start|end|both (tone); images/PDF: a corner; video: a corner and/or "
        "start|end|both to tone and watermark the soundtrack (e.g. top-right,start; default: audio copied).",
    ),
    style: str = typer.Option("plate", "--style", help="Visible style: plate, outline or icon."),
    registry: Path | None = typer.Option(None, "--registry", help="SQLite registry to record the label in."),
    pages: str = typer.Option("all", "--pages", help="Paged documents: stamp all pages or the first."),
    video_warning: str = typer.Option(
        "both",
        "--video-warning",
        help="Video: opening (full-size, first 2 s), persistent (small corner label) or both.",
    ),
    audio_notice: str = typer.Option(
        "tone",
        "--audio-notice",
        help="Audio: tone (the · − · · rhythm), speech (the notice read aloud in --lang) or both.",
    ),
    password: str | None = typer.Option(
        None, "--password", envvar="KZLABEL_PASSWORD", help="Password of an encrypted PDF."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Label one file with every layer its format has."""
    from . import IPTC_COMPOSITE, IPTC_TRAINED, Labeler, Registry, Signer
    from .formats.base import AudioNotice, Pages, VideoWarning, choice
    from .layers import LAYERS, Style

    if in_place == (output is not None):
        _fail("give exactly one of -o DST or --in-place")
    signer = Signer.load(key)
    reg = Registry(registry) if registry else None
    labeler = Labeler(
        signer,
        owner=owner,
        system=system,
        system_version=system_version,
        languages=_split(lang) or ("kk", "ru", "en"),
        source_type=IPTC_COMPOSITE if kind == SourceKind.modified else IPTC_TRAINED,
        training={"not-allowed": "notAllowed"}.get(training.value, training.value),
        depicts_real_person=real_person,
        layers=_split(layers) or LAYERS,
        position=position,
        style=choice("--style", style, Style),
        pages=choice("--pages", pages, Pages),
        video_warning=choice("--video-warning", video_warning, VideoWarning),
        audio_notice=choice("--audio-notice", audio_notice, AudioNotice),
        registry=reg,
    )
    result = labeler.mark(src, output, in_place=in_place, password=password)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "dst": result.dst,
                    "format": result.format,
                    "layers": list(result.layers),
                    "skipped": result.skipped,
                    "label": result.label.to_dict(),
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        _exit_if_unproven(_split(layers), result.skipped)
        return
    typer.echo(
        f"{result.dst}: {result.format}, layers {', '.join(result.layers) or 'none'}, id {result.label.content_id}"
    )
    for layer, why in result.skipped.items():
        typer.echo(f"  skipped {layer}: {why}")
    _exit_if_unproven(_split(layers), result.skipped)


def _exit_if_unproven(asked: list[str], skipped: Mapping[Layer, str]) -> None:
    """Layers named with --layers that could not be applied and proven fail the command (exit 1); without --layers,
    a format's missing layers are reported, not failed."""
    missing = [layer for layer in asked if layer in skipped]
    if missing:
        typer.echo(f"kzlabel: not applied: {', '.join(missing)} (see the skipped lines)", err=True)
        raise typer.Exit(EXIT_NOT_COMPLIANT)


@app.command()
def verify(
    file: Path = typer.Argument(..., help="File to check."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    trust: list[Path] | None = typer.Option(None, "--trust", help="Trust bundle file or keygen folder (repeatable)."),
    registry: Path | None = typer.Option(None, "--registry", help="SQLite registry to look watermarks up in."),
    password: str | None = typer.Option(
        None, "--password", envvar="KZLABEL_PASSWORD", help="Password of an encrypted PDF."
    ),
    allow_untrusted: bool = typer.Option(
        False,
        "--allow-untrusted",
        help="With --trust: also accept a compliant file signed by a signer not under the anchors (exit 0).",
    ),
) -> None:
    """Check every label layer; exit 0 when compliant (and, with --trust, trusted), 1 when not."""
    from . import Registry, TrustStore, Verdict
    from . import verify as verify_file

    store = TrustStore.load(trust) if trust else None
    if registry is not None and not registry.exists():
        _fail(f"{registry}: no such registry")
    reg = Registry(registry) if registry else None
    report = verify_file(file, trust=store, registry=reg, password=password)
    typer.echo(report.to_json(allow_untrusted=allow_untrusted) if as_json else str(report))
    why = report.rejection(allow_untrusted=allow_untrusted)
    if why is not None and report.verdict == Verdict.COMPLIANT:  # the verdict line alone would read as a pass
        typer.echo(f"not accepted: {why} (--allow-untrusted accepts it)", err=as_json)
    raise typer.Exit(EXIT_OK if why is None else EXIT_NOT_COMPLIANT)


@app.command()
def optout(
    target: Path = typer.Argument(..., help="File to mark (in place), or with --well-known a site folder."),
    deny: list[str] | None = typer.Option(
        None, "--deny", help="Uses to reserve: ai-training, generative-training, inference, data-mining, all."
    ),
    allow: list[str] | None = typer.Option(None, "--allow", help="Uses to allow explicitly."),
    policy: str | None = typer.Option(None, "--policy", help="TDMRep tdm-policy URL (licence terms)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write a copy instead of changing FILE."),
    key: Path | None = typer.Option(
        None, "--key", envvar="KZLABEL_KEY", help="Also sign a C2PA cawg.training-mining manifest."
    ),
    well_known: bool = typer.Option(
        False, "--well-known", help="Write TARGET/.well-known/tdmrep.json from the files' declarations."
    ),
) -> None:
    """Write a rights-holder's training reservation (Art. 23(5)) into every carrier the file has."""
    from .keys import Signer
    from .rights.actions import write_optout, write_well_known
    from .rights.vocab import TrainingPolicy

    if well_known:
        typer.echo(f"wrote {write_well_known(target)}")
        return
    pol = TrainingPolicy.from_lists(_split(deny), _split(allow), policy)
    signer = Signer.load(key) if key else None
    write_optout(target, output, policy=pol, signer=signer, in_place=output is None)
    said = ", ".join(f"{u} {v.value}" for u, v in pol.uses.items())
    typer.echo(f"{output or target}: {said}")


@app.command("training-check")
def training_check(
    path: Path = typer.Argument(..., help="A file, or a folder to scan (its .well-known/tdmrep.json applies)."),
    use: str = typer.Option(
        "ai_training", "--use", help="ai_training, ai_generative_training, ai_inference or data_mining."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file."),
    trust: list[Path] | None = typer.Option(None, "--trust", help="Trust bundle for signed declarations."),
) -> None:
    """List what may not be used for training; exit 1 when anything is reserved."""
    from .keys import TrustStore
    from .rights.actions import check_tree, training_allowed

    store = TrustStore.load(trust) if trust else None
    results = (
        check_tree(path, use=use, trust=store)
        if path.is_dir()
        else [(path, training_allowed(path, use=use, trust=store))]
    )
    reserved = 0
    for file, check in results:
        if isinstance(check, KzlabelError):
            line = {"source": str(file), "error": check.message} if as_json else f"{file}: unreadable: {check.message}"
        else:
            reserved += check.may_not_use
            line = (
                check.to_dict()
                if as_json
                else f"{file}: {check.status.value}" + (" (conflicting signals)" if check.conflicting else "")
            )
        typer.echo(json.dumps(line, ensure_ascii=False) if as_json else line)
    raise typer.Exit(EXIT_NOT_COMPLIANT if reserved else EXIT_OK)


@app.command()
def dataset(
    directory: Path = typer.Argument(..., help="The data library folder."),
    producer: str | None = typer.Option(None, "--producer", help="Who produced the library (Art. 27(5))."),
    license: str | None = typer.Option(None, "--license", help="Licence (SPDX id or URL)."),
    purpose: str = typer.Option("", "--purpose", help="What the library is for."),
    name: str | None = typer.Option(None, "--name", help="Dataset name (default: the folder name)."),
    key: Path | None = typer.Option(None, "--key", envvar="KZLABEL_KEY", help="keygen folder to sign the manifest."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Manifest path (default DIR/croissant.json)."),
    check: bool = typer.Option(False, "--verify", help="Verify the manifest against the folder instead."),
    trust: list[Path] | None = typer.Option(None, "--trust", help="Trust bundle for --verify."),
) -> None:
    """Write (or --verify) the signed Croissant manifest of a data library."""
    from .dataset import verify_manifest, write_manifest
    from .keys import Signer, TrustStore

    if check:
        result = verify_manifest(directory, output, trust=TrustStore.load(trust) if trust else None)
        typer.echo(f"{directory}: {'ok' if result.ok else 'NOT OK'}; signature {result.signature}: {result.reason}")
        for kind in ("added", "removed", "changed"):
            for rel in getattr(result, kind):
                typer.echo(f"  {kind}: {rel}")
        raise typer.Exit(EXIT_OK if result.ok else EXIT_NOT_COMPLIANT)
    if not producer or not license:
        _fail("--producer and --license are required to write a manifest")
    signer = Signer.load(key) if key else None
    path = write_manifest(
        directory, output, producer=producer, license=license, purpose=purpose, name=name, signer=signer
    )
    typer.echo(f"wrote {path}" + ("" if signer else " (unsigned: pass --key to sign it)"))


@app.command()
def batch(
    src: Path = typer.Argument(..., help="A folder, .zip, .tar, .tar.gz or .tar.zst archive."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output folder or archive of the same kind."),
    key: Path | None = typer.Option(None, "--key", envvar="KZLABEL_KEY", help="keygen folder to sign with."),
    system: str | None = typer.Option(None, "--system", envvar="KZLABEL_SYSTEM", help="AI system name."),
    owner: str | None = typer.Option(None, "--owner", envvar="KZLABEL_OWNER", help="Owner/holder (Art. 21(3))."),
    system_version: str = typer.Option("", "--system-version", envvar="KZLABEL_SYSTEM_VERSION"),
    lang: list[str] | None = typer.Option(None, "--lang", help="Notice languages, e.g. kk,ru,en (default)."),
    training: TrainingChoice = typer.Option(TrainingChoice.unspecified, "--training"),
    layers: list[str] | None = typer.Option(None, "--layers", help="Subset of c2pa,metadata,watermark,visible."),
    workers: int | None = typer.Option(None, "--workers", help="Processes (default: all cores)."),
    journal: Path | None = typer.Option(None, "--journal", help="Resume journal (default: DST.journal.sqlite)."),
    verify_only: bool = typer.Option(False, "--verify", help="Verify every member instead of labelling."),
    training_check_only: bool = typer.Option(
        False, "--training-check", help="List members that may not be used for AI training."
    ),
    trust: list[Path] | None = typer.Option(None, "--trust", help="Trust bundle or keygen folder (with --verify)."),
    allow_untrusted: bool = typer.Option(
        False, "--allow-untrusted", help="With --verify --trust: accept compliant members signed outside the anchors."
    ),
    report: Path | None = typer.Option(None, "--report", help="JSONL report path (--verify / --training-check)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Label (or --verify, or --training-check) every file of a folder or archive; resumable."""
    from . import batch as batch_mod

    if verify_only or training_check_only:
        if verify_only and training_check_only:
            _fail("give one of --verify or --training-check")
        if verify_only:
            summary = batch_mod.verify_batch(
                src,
                trust=trust or None,
                workers=workers,
                report_path=report,
                progress=progress,
                allow_untrusted=allow_untrusted,
            )
        else:
            summary = batch_mod.training_check(src, workers=workers, report_path=report, progress=progress)
        typer.echo(summary.text())
        # verify: exit 0 only when every member is accepted, as `kzlabel verify` does for one file
        bad = not summary.accepted if verify_only else not summary.ok or bool(summary.flagged)
        raise typer.Exit(EXIT_NOT_COMPLIANT if bad else EXIT_OK)
    if output is None or key is None or not system or not owner:
        _fail("labelling needs -o DST, --key DIR, --system and --owner")
    config = {
        "owner": owner,
        "system": system,
        "system_version": system_version,
        "languages": _split(lang) or ["kk", "ru", "en"],
        "training": {"not-allowed": "notAllowed"}.get(training.value, training.value),
    }
    if layers:
        config["layers"] = _split(layers)
    summary = batch_mod.run_batch(
        src, output, labeler_config=config, key_dir=key, workers=workers, journal=journal, progress=progress
    )
    typer.echo(summary.text())
    raise typer.Exit(EXIT_OK if summary.ok else EXIT_NOT_COMPLIANT)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    trust: list[Path] | None = typer.Option(None, "--trust", help="Trust bundle file or keygen folder (repeatable)."),
    registry: Path | None = typer.Option(None, "--registry", help="SQLite registry for watermark lookups."),
    max_upload: int = typer.Option(256 * 1024**2, "--max-upload", help="Largest accepted upload in bytes (413 above)."),
    mark_key: Path | None = typer.Option(
        None, "--mark-key", help="keygen folder: enables POST /mark (off by default)."
    ),
    owner: str | None = typer.Option(None, "--owner", envvar="KZLABEL_OWNER", help="Owner/holder for /mark."),
    system: str | None = typer.Option(None, "--system", envvar="KZLABEL_SYSTEM", help="AI system for /mark."),
) -> None:
    """Run the HTTP upload-verification service (POST /verify, optional POST /mark, GET /healthz)."""
    from . import Registry, Signer, TrustStore

    try:
        from .server import run
    except ImportError:
        _fail("the service needs its extra: pip install 'kzlabel[serve]'")
    if mark_key is not None and not (owner and system):
        _fail("--mark-key needs --owner and --system (they go into every label the service signs)")
    if registry is not None and not registry.exists():
        _fail(f"{registry}: no such registry")
    run(
        host,
        port,
        trust=TrustStore.load(trust) if trust else None,
        registry=Registry(registry) if registry else None,
        signer=Signer.load(mark_key) if mark_key else None,
        owner=owner,
        system=system,
        max_upload=max_upload,
    )


@app.command()
def version() -> None:
    """Print the kzlabel version."""
    typer.echo(__version__)


def _wants_json(args: list[str]) -> bool:
    """Whether the command line asks for JSON output (then errors are JSON too), looked at before parsing so that
    even a usage error answers in JSON."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _report_error(kind: str, reason: str, code: int, as_json: bool, line: str | None = None) -> int:
    """One line on stderr (``line``, default ``kzlabel: error: REASON``), and the JSON error object on stdout."""
    reason = _one_line(reason)
    if as_json:
        typer.echo(json.dumps({"error": kind, "reason": reason}, ensure_ascii=False))
    typer.echo(line or f"kzlabel: error: {reason}", err=True)
    return code


def _usage_errors() -> tuple[type[Exception], ...]:
    """The exceptions typer raises for a bad command line when not in standalone mode: those of the click it runs
    on (its own copy since typer 0.26, whose root is ``typer.TyperException``; click itself before)."""
    root = getattr(typer, "TyperException", None)
    if root is None:  # typer < 0.26 runs on click
        import click

        root = click.ClickException
    return (root,)


def _usage_reason(exc: Exception) -> str:
    """click's message, with the help hint click would have printed on lines of its own."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return _one_line(message).rstrip(".") + hint


def main(argv: list[str] | None = None) -> int:
    """Entry point: every error is one line on stderr (and a JSON object on stdout with --json); usage and input
    errors exit 2, internal errors 3; ``--help`` prints typer's help as always."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        code = app(args=args, prog_name="kzlabel", standalone_mode=False)
    except UsageProblem as exc:
        return _report_error("usage_error", str(exc), EXIT_INPUT, as_json)
    except _usage_errors() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `kzlabel`: typer has printed the help already
            return EXIT_INPUT
        return _report_error("usage_error", _usage_reason(exc), EXIT_INPUT, as_json)
    except KzlabelError as exc:
        return _report_error(error_kind(exc), str(exc), EXIT_INPUT, as_json)
    except (KeyboardInterrupt, typer.Abort):
        return _report_error("interrupted", "interrupted", EXIT_INPUT, as_json, "kzlabel: interrupted")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_INPUT)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, never a traceback
        reason = f"{type(exc).__name__}: {exc}"
        return _report_error("internal_error", reason, EXIT_INTERNAL, as_json, f"kzlabel: internal error: {reason}")
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
