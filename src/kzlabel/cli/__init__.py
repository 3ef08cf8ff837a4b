"""The `kzlabel` command line.

Exit codes (documented in the README): 0 compliant (and, with trust anchors given, signed by a trusted signer) /
success, 1 verified but not accepted, 2 usage or input error (bad file, unsupported format, bad key, missing output
folder), 3 internal error. Errors print one line (``kzlabel: error: ...``); no tracebacks. With ``--json`` an error
is also a JSON object on stdout, ``{"error": kind, "reason": text}``, the shape ``kzlabel serve`` answers with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import KzlabelError, error_kind
from ..layers import Layer
from .base import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_NOT_COMPLIANT,
    EXIT_OK,
    REGISTRY_HELP,
    TRUST_HELP,
    Args,
    Command,
    UsageProblem,
)
from .base import Formatter as _Formatter
from .base import Parser as _Parser
from .base import command as _command
from .base import env_option as _env
from .base import fail as _fail
from .base import need as _need
from .base import out as _out
from .base import registry_from as _registry
from .base import split as _split
from .serve import add_serve_command


def _training(value: str) -> str:
    return {"not-allowed": "notAllowed"}.get(value, value)


def keygen(args: Args) -> int:
    """Create a signing key and a C2PA-valid certificate chain, plus the trust bundle verifiers need."""
    from ..keys import generate

    paths = generate(args.directory, alg=args.alg, common_name=args.name, organization=args.org, overwrite=args.force)
    _out(f"signing key  {paths.key}  (mode 0600; keep it secret)")
    _out(f"chain        {paths.chain}")
    _out(f"trust bundle {paths.trust}  (give this to verifiers: --trust)")
    return EXIT_OK


def mark(args: Args) -> int:
    """Label one file with every layer its format has."""
    from .. import IPTC_COMPOSITE, IPTC_TRAINED, Labeler, Signer
    from ..formats.base import AudioNotice, Pages, TextCarrier, VideoWarning, choice
    from ..layers import LAYERS, Style

    _need(args, "--key", "--system", "--owner")
    if args.in_place == (args.output is not None):
        _fail("give exactly one of -o DST or --in-place")
    signer = Signer.load(args.key)
    labeler = Labeler(
        signer,
        owner=args.owner,
        system=args.system,
        system_version=args.system_version or "",
        languages=_split(args.lang) or ("kk", "ru", "en"),
        source_type=IPTC_COMPOSITE if args.kind == "modified" else IPTC_TRAINED,
        training=_training(args.training),
        depicts_real_person=args.real_person,
        layers=_split(args.layers) or LAYERS,
        position=args.position,
        style=choice("--style", args.style, Style),
        pages=choice("--pages", args.pages, Pages),
        video_warning=choice("--video-warning", args.video_warning, VideoWarning),
        audio_notice=choice("--audio-notice", args.audio_notice, AudioNotice),
        text_carrier=choice("--text-carrier", args.text_carrier, TextCarrier),
        registry=_registry(args.registry, existing=False),
    )
    result = labeler.mark(args.src, args.output, in_place=args.in_place, password=args.password)
    if args.json:
        body = {
            "dst": result.dst,
            "format": result.format,
            "layers": list(result.layers),
            "skipped": result.skipped,
            "robustness": result.robustness,
            "survival_class": result.survival_class,
            "encoding": result.encoding,
            "label": result.label.to_dict(),
        }
        _out(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        _out(
            f"{result.dst}: {result.format}, layers {', '.join(result.layers) or 'none'}, id {result.label.content_id}"
        )
        for layer, line in result.robustness.items():
            _out(f"  {layer} {line}")
        for stream, line in result.encoding.items():
            _out(f"  {stream}: {line}")
        for layer, why in result.skipped.items():
            _out(f"  skipped {layer}: {why}")
    return _unproven(_split(args.layers), result.skipped)


def _unproven(asked: list[str], skipped: Mapping[Layer, str]) -> int:
    """Layers named with --layers that could not be applied and proven fail the command (exit 1); without --layers,
    a format's missing layers are reported, not failed."""
    missing = [layer for layer in asked if layer in skipped]
    if missing:
        _out(f"kzlabel: not applied: {', '.join(missing)} (see the skipped lines)", err=True)
        return EXIT_NOT_COMPLIANT
    return EXIT_OK


def verify(args: Args) -> int:
    """Check every label layer; exit 0 when compliant (and, with --trust, trusted), 1 when not."""
    from .. import TrustStore, Verdict
    from .. import verify as verify_file

    store = TrustStore.load(args.trust) if args.trust else None
    reg = _registry(args.registry, existing=True)
    report = verify_file(args.file, trust=store, registry=reg, password=args.password)
    _out(report.to_json(allow_untrusted=args.allow_untrusted) if args.json else str(report))
    why = report.rejection(allow_untrusted=args.allow_untrusted)
    if why is not None and report.verdict == Verdict.COMPLIANT:  # the verdict line alone would read as a pass
        _out(f"not accepted: {why} (--allow-untrusted accepts it)", err=args.json)
    return EXIT_OK if why is None else EXIT_NOT_COMPLIANT


def stress(args: Args) -> int:
    """Apply what platforms do to uploads, verify each version: exit 1 if the watermark (text/PDF: label) is lost."""
    from .. import TrustStore
    from ..io import check_destination, write_atomic
    from ..survival import render
    from ..survival import stress as run_stress

    if args.html is not None:
        check_destination(args.html)  # before minutes of transcoding, not after
    store = TrustStore.load(args.trust) if args.trust else None
    report = run_stress(
        args.file,
        trust=store,
        registry=_registry(args.registry, existing=True),
        only=_split(args.only) or None,
        previews=args.html is not None,
        password=args.password,
    )
    if args.json:
        _out(report.to_json())
    else:
        render.print_table(report)
    if args.html is not None:
        write_atomic(args.html, render.html_page(report).encode("utf-8"))
        _out(f"wrote {args.html}", err=True)
    if args.json and not report.survived:
        _out(render.summary(report), err=True)
    return EXIT_OK if report.survived else EXIT_NOT_COMPLIANT


def optout(args: Args) -> int:
    """Write a rights-holder's training reservation (Art. 23(5)) into every carrier the file has."""
    from ..keys import Signer
    from ..rights.actions import write_optout, write_well_known
    from ..rights.vocab import TrainingPolicy

    if args.well_known:
        _out(f"wrote {write_well_known(args.target)}")
        return EXIT_OK
    pol = TrainingPolicy.from_lists(_split(args.deny), _split(args.allow), args.policy)
    signer = Signer.load(args.key) if args.key else None
    write_optout(args.target, args.output, policy=pol, signer=signer, in_place=args.output is None)
    said = ", ".join(f"{u} {v.value}" for u, v in pol.uses.items())
    _out(f"{args.output or args.target}: {said}")
    return EXIT_OK


def training_check(args: Args) -> int:
    """List what may not be used for training; exit 1 when anything is reserved."""
    from ..keys import TrustStore
    from ..rights.actions import check_tree, training_allowed

    store = TrustStore.load(args.trust) if args.trust else None
    path, use = args.path, args.use
    results = (
        check_tree(path, use=use, trust=store)
        if path.is_dir()
        else [(path, training_allowed(path, use=use, trust=store))]
    )
    reserved = 0
    for file, check in results:
        line: Any
        if isinstance(check, KzlabelError):
            line = (
                {"source": str(file), "error": check.message} if args.json else f"{file}: unreadable: {check.message}"
            )
        else:
            reserved += check.may_not_use
            line = (
                check.to_dict()
                if args.json
                else f"{file}: {check.status.value}" + (" (conflicting signals)" if check.conflicting else "")
            )
        _out(json.dumps(line, ensure_ascii=False) if args.json else line)
    return EXIT_NOT_COMPLIANT if reserved else EXIT_OK


def dataset(args: Args) -> int:
    """Write (or --verify) the signed Croissant manifest of a data library."""
    from ..dataset import verify_manifest, write_manifest
    from ..keys import Signer, TrustStore

    if args.verify:
        result = verify_manifest(args.directory, args.output, trust=TrustStore.load(args.trust) if args.trust else None)
        _out(f"{args.directory}: {'ok' if result.ok else 'NOT OK'}; signature {result.signature}: {result.reason}")
        for kind in ("added", "removed", "changed"):
            for rel in getattr(result, kind):
                _out(f"  {kind}: {rel}")
        return EXIT_OK if result.ok else EXIT_NOT_COMPLIANT
    if not args.producer or not args.license:
        _fail("--producer and --license are required to write a manifest")
    signer = Signer.load(args.key) if args.key else None
    path = write_manifest(
        args.directory,
        args.output,
        producer=args.producer,
        license=args.license,
        purpose=args.purpose,
        name=args.name,
        signer=signer,
    )
    _out(f"wrote {path}" + ("" if signer else " (unsigned: pass --key to sign it)"))
    return EXIT_OK


def batch(args: Args) -> int:
    """Label (or --verify, or --training-check) every file of a folder or archive; resumable."""
    from .. import batch as batch_mod

    if args.verify or args.training_check:
        if args.verify and args.training_check:
            _fail("give one of --verify or --training-check")
        if args.verify:
            summary = batch_mod.verify_batch(
                args.src,
                trust=args.trust or None,
                workers=args.workers,
                report_path=args.report,
                progress=args.progress,
                allow_untrusted=args.allow_untrusted,
            )
        else:
            summary = batch_mod.training_check(
                args.src, workers=args.workers, report_path=args.report, progress=args.progress
            )
        _out(summary.text())
        # verify: exit 0 only when every member is accepted, as `kzlabel verify` does for one file
        bad = not summary.accepted if args.verify else not summary.ok or bool(summary.flagged)
        return EXIT_NOT_COMPLIANT if bad else EXIT_OK
    if args.output is None or args.key is None or not args.system or not args.owner:
        _fail("labelling needs -o DST, --key DIR, --system and --owner")
    config: dict[str, Any] = {
        "owner": args.owner,
        "system": args.system,
        "system_version": args.system_version or "",
        "languages": _split(args.lang) or ["kk", "ru", "en"],
        "training": _training(args.training),
    }
    if args.layers:
        config["layers"] = _split(args.layers)
    if args.registry:
        config["registry"] = args.registry  # each worker opens it: a postgresql:// URL on a cluster
    if args.dask:
        from ..distributed import run_dask

        summary = run_dask(args.src, args.output, config, args.key, scheduler=args.dask, journal=args.journal)
    else:
        summary = batch_mod.run_batch(
            args.src,
            args.output,
            labeler_config=config,
            key_dir=args.key,
            workers=args.workers,
            journal=args.journal,
            progress=args.progress,
        )
    _out(summary.text())
    return EXIT_OK if summary.ok else EXIT_NOT_COMPLIANT


# ``kzlabel serve`` options → ServiceLimits fields (docs/serve.md has the table); None: the field's default
def version(args: Args) -> int:
    """Print the kzlabel version."""
    _out(__version__)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------- the parser

_LAYERS_HELP = "Subset of c2pa,metadata,watermark,visible."
_LANG_HELP = "Notice languages, e.g. kk,ru,en (default)."


def _parser() -> argparse.ArgumentParser:
    """The whole command line, built per call so that environment-variable defaults are read when it runs."""
    root = _Parser(
        prog="kzlabel",
        description="Label AI-generated content (Kazakhstan AI Law Art. 21) and verify labels.",
        formatter_class=_Formatter,
    )
    sub = root.add_subparsers(title="Commands", dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _command(sub, keygen)
    p.add_argument("directory", type=Path, help="Folder for signing.key (0600), chain.pem and trust.pem.")
    p.add_argument("--alg", default="ed25519", choices=("ed25519", "es256"), help="Signature algorithm.")
    p.add_argument("--name", default="kzlabel signer", help="Certificate common name.")
    p.add_argument("--org", help="Organisation in the certificate (the owner/holder).")
    p.add_argument("--force", action=argparse.BooleanOptionalAction, default=False, help="Overwrite an existing key.")

    p = _command(sub, mark)
    p.add_argument("src", type=Path, help="File to label.")
    p.add_argument("-o", "--output", type=Path, help="Where to write the labelled file.")
    p.add_argument("--in-place", action="store_true", help="Replace SRC atomically instead of writing -o.")
    _env(p, "--key", "KZLABEL_KEY", "keygen folder (or key file) to sign with.", type=Path)
    _env(p, "--system", "KZLABEL_SYSTEM", "AI system name.")
    _env(p, "--system-version", "KZLABEL_SYSTEM_VERSION", "AI system version.")
    _env(p, "--owner", "KZLABEL_OWNER", "Owner/holder responsible (Art. 21(3)).")
    p.add_argument("--lang", action="append", help=_LANG_HELP)
    p.add_argument("--kind", default="generated", choices=("generated", "modified"), help="Or modified (AI edit).")
    p.add_argument("--training", default="unspecified", choices=("allowed", "not-allowed", "unspecified"))
    p.add_argument("--real-person", action="store_true", help="The content depicts a real person.")
    p.add_argument("--layers", action="append", help=_LAYERS_HELP)
    p.add_argument(
        "--position",
        help="Text: start|end; audio: start|end|both (tone); images/PDF: a corner; video: a corner and/or "
        "start|end|both to tone and watermark the soundtrack (e.g. top-right,start; default: audio copied).",
    )
    p.add_argument("--style", default="plate", help="Visible style: plate, outline or icon.")
    p.add_argument("--registry", help=REGISTRY_HELP + " to record the label (and its manifest) in.")
    p.add_argument("--pages", default="all", help="Paged documents: stamp all pages or the first.")
    video = "Video: opening (full-size, first 2 s), persistent (small corner label) or both."
    p.add_argument("--video-warning", default="both", help=video)
    audio = "Audio: tone (the · − · · rhythm), speech (the notice read aloud in --lang) or both."
    p.add_argument("--audio-notice", default="tone", help=audio)
    text = "Text: the signed label in kzlabel's own carrier (kzlabel), a C2PA 2.4 text manifest (c2pa) or both."
    p.add_argument("--text-carrier", default="kzlabel", help=text)
    _env(p, "--password", "KZLABEL_PASSWORD", "Password of an encrypted PDF.")
    p.add_argument("--json", action="store_true", help="Print the result as JSON.")

    p = _command(sub, verify)
    p.add_argument("file", type=Path, help="File to check.")
    p.add_argument("--json", action="store_true", help="Print the report as JSON.")
    p.add_argument("--trust", type=Path, action="append", help=TRUST_HELP)
    p.add_argument(
        "--registry", help=REGISTRY_HELP + ", or an http(s):// Soft Binding Resolution API, to look watermarks up in."
    )
    _env(p, "--password", "KZLABEL_PASSWORD", "Password of an encrypted PDF.")
    p.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="With --trust: also accept a compliant file signed by a signer not under the anchors (exit 0).",
    )

    p = _command(sub, stress)
    p.add_argument("file", type=Path, help="A labelled file (it is only read).")
    p.add_argument("--json", action="store_true", help="Print the report as JSON (docs/stress.md has its shape).")
    p.add_argument("--html", type=Path, metavar="REPORT.html", help="Also write a self-contained HTML report.")
    p.add_argument("--trust", type=Path, action="append", help=TRUST_HELP)
    p.add_argument("--registry", help=REGISTRY_HELP + ", or an http(s):// resolver, to look watermarks up in.")
    p.add_argument("--only", action="append", help="Only these transformations, e.g. jpeg75,webp75.")
    _env(p, "--password", "KZLABEL_PASSWORD", "Password of an encrypted PDF.")

    p = _command(sub, optout)
    p.add_argument("target", type=Path, help="File to mark (in place), or with --well-known a site folder.")
    p.add_argument(
        "--deny",
        action="append",
        help="Uses to reserve: ai-training, generative-training, inference, data-mining, all.",
    )
    p.add_argument("--allow", action="append", help="Uses to allow explicitly.")
    p.add_argument("--policy", help="TDMRep tdm-policy URL (licence terms).")
    p.add_argument("-o", "--output", type=Path, help="Write a copy instead of changing TARGET.")
    _env(p, "--key", "KZLABEL_KEY", "Also sign a C2PA cawg.training-mining manifest.", type=Path)
    p.add_argument(
        "--well-known", action="store_true", help="Write TARGET/.well-known/tdmrep.json from the files' declarations."
    )

    p = _command(sub, training_check, "training-check")
    p.add_argument("path", type=Path, help="A file, or a folder to scan (its .well-known/tdmrep.json applies).")
    p.add_argument(
        "--use", default="ai_training", help="ai_training, ai_generative_training, ai_inference or data_mining."
    )
    p.add_argument("--json", action="store_true", help="One JSON object per file.")
    p.add_argument("--trust", type=Path, action="append", help="Trust bundle for signed declarations.")

    p = _command(sub, dataset)
    p.add_argument("directory", type=Path, help="The data library folder.")
    p.add_argument("--producer", help="Who produced the library (Art. 27(5)).")
    p.add_argument("--license", help="Licence (SPDX id or URL).")
    p.add_argument("--purpose", default="", help="What the library is for.")
    p.add_argument("--name", help="Dataset name (default: the folder name).")
    _env(p, "--key", "KZLABEL_KEY", "keygen folder to sign the manifest.", type=Path)
    p.add_argument("-o", "--output", type=Path, help="Manifest path (default DIR/croissant.json).")
    p.add_argument("--verify", action="store_true", help="Verify the manifest against the folder instead.")
    p.add_argument("--trust", type=Path, action="append", help="Trust bundle for --verify.")

    p = _command(sub, batch)
    p.add_argument("src", type=Path, help="A folder, .zip, .tar, .tar.gz or .tar.zst archive.")
    p.add_argument("-o", "--output", type=Path, help="Output folder or archive of the same kind.")
    _env(p, "--key", "KZLABEL_KEY", "keygen folder to sign with.", type=Path)
    _env(p, "--system", "KZLABEL_SYSTEM", "AI system name.")
    _env(p, "--owner", "KZLABEL_OWNER", "Owner/holder (Art. 21(3)).")
    _env(p, "--system-version", "KZLABEL_SYSTEM_VERSION", "AI system version.")
    p.add_argument("--lang", action="append", help=_LANG_HELP)
    p.add_argument("--training", default="unspecified", choices=("allowed", "not-allowed", "unspecified"))
    p.add_argument("--layers", action="append", help=_LAYERS_HELP)
    p.add_argument("--workers", type=int, help="Processes (default: all cores).")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="Run on a Dask cluster (tcp://HOST:PORT; SRC, DST and --key at the same paths on every worker) or a local "
        "Dask scheduler (processes, threads, sync). SRC must be a folder.",
    )
    p.add_argument("--registry", help=REGISTRY_HELP + " to record every label in.")
    p.add_argument("--journal", type=Path, help="Resume journal (default: DST.journal.sqlite).")
    p.add_argument("--verify", action="store_true", help="Verify every member instead of labelling.")
    p.add_argument("--training-check", action="store_true", help="List members that may not be used for AI training.")
    p.add_argument("--trust", type=Path, action="append", help="Trust bundle or keygen folder (with --verify).")
    p.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="With --verify --trust: accept compliant members signed outside the anchors.",
    )
    p.add_argument("--report", type=Path, help="JSONL report path (--verify / --training-check).")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="Show a progress bar.")

    add_serve_command(sub)
    _command(sub, version)
    return root


# ---------------------------------------------------------------------------------------------- entry point


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
        _out(json.dumps({"error": kind, "reason": reason}, ensure_ascii=False))
    _out(line or f"kzlabel: error: {reason}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: every error is one line on stderr (and a JSON object on stdout with --json); usage and input
    errors exit 2, internal errors 3; ``--help`` prints the help; a bare ``kzlabel`` prints it and exits 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        parser = _parser()
        if not args:
            parser.print_help()
            return EXIT_INPUT
        parsed = parser.parse_args(args)
        run: Command | None = getattr(parsed, "run", None)
        if run is None:
            _fail("missing command (see 'kzlabel --help')")
        return run(parsed)
    except UsageProblem as exc:
        return _report_error("usage_error", str(exc), EXIT_INPUT, as_json)
    except KzlabelError as exc:
        return _report_error(error_kind(exc), str(exc), EXIT_INPUT, as_json)
    except KeyboardInterrupt:
        return _report_error("interrupted", "interrupted", EXIT_INPUT, as_json, "kzlabel: interrupted")
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_INPUT)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, never a traceback
        reason = f"{type(exc).__name__}: {exc}"
        return _report_error("internal_error", reason, EXIT_INTERNAL, as_json, f"kzlabel: internal error: {reason}")
