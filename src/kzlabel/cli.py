"""The `kzlabel` command line.

Exit codes (documented in the README): 0 compliant (and, with trust anchors given, signed by a trusted signer) /
success, 1 verified but not accepted, 2 usage or input error (bad file, unsupported format, bad key, missing output
folder), 3 internal error. Errors print one line (``kzlabel: error: ...``); no tracebacks. With ``--json`` an error
is also a JSON object on stdout, ``{"error": kind, "reason": text}``, the shape ``kzlabel serve`` answers with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from ._version import __version__
from .errors import KzlabelError, error_kind
from .layers import Layer

EXIT_OK, EXIT_NOT_COMPLIANT, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

Args = argparse.Namespace
Command = Callable[[Args], int]


class UsageProblem(Exception):
    """A command line that cannot be run as given (options missing or contradicting); main() prints it."""


def _fail(message: str) -> NoReturn:
    raise UsageProblem(message)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _out(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout)


class _Formatter(argparse.HelpFormatter):
    """argparse's help with a capitalised usage line and each option's default where it says something."""

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        from_env = "[env: " in text  # never echo an environment value (it may be a password)
        if action.default not in (None, False, True, [], "", argparse.SUPPRESS) and not from_env:
            text += " [default: %(default)s]"
        return text


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are raised (main() prints them on one line), not printed and exited on."""

    def error(self, message: str) -> NoReturn:
        message = message.replace("the following arguments are required:", "missing argument:")
        _fail(f"{message} (see '{self.prog} --help')")


def _env(parser: argparse.ArgumentParser, flag: str, env: str, help: str = "", **kw: Any) -> None:
    """An option that falls back to environment variable ``env``; checked by :func:`_need` when required."""
    parser.add_argument(flag, default=os.environ.get(env, kw.pop("default", None)), help=f"{help} [env: {env}]", **kw)


def _need(args: Args, *flags: str) -> None:
    """Options a command cannot run without (given on the command line or through their environment variable)."""
    missing = [f for f in flags if getattr(args, f.lstrip("-").replace("-", "_")) in (None, "")]
    if missing:
        _fail(f"missing option {', '.join(missing)} (see 'kzlabel {args.command} --help')")


def _training(value: str) -> str:
    return {"not-allowed": "notAllowed"}.get(value, value)


def keygen(args: Args) -> int:
    """Create a signing key and a C2PA-valid certificate chain, plus the trust bundle verifiers need."""
    from .keys import generate

    paths = generate(args.directory, alg=args.alg, common_name=args.name, organization=args.org, overwrite=args.force)
    _out(f"signing key  {paths.key}  (mode 0600; keep it secret)")
    _out(f"chain        {paths.chain}")
    _out(f"trust bundle {paths.trust}  (give this to verifiers: --trust)")
    return EXIT_OK


def mark(args: Args) -> int:
    """Label one file with every layer its format has."""
    from . import IPTC_COMPOSITE, IPTC_TRAINED, Labeler, Signer
    from .formats.base import AudioNotice, Pages, VideoWarning, choice
    from .layers import LAYERS, Style

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
            "label": result.label.to_dict(),
        }
        _out(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        _out(
            f"{result.dst}: {result.format}, layers {', '.join(result.layers) or 'none'}, id {result.label.content_id}"
        )
        for layer, line in result.robustness.items():
            _out(f"  {layer} {line}")
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
    from . import TrustStore, Verdict
    from . import verify as verify_file

    store = TrustStore.load(args.trust) if args.trust else None
    reg = _registry(args.registry, existing=True)
    report = verify_file(args.file, trust=store, registry=reg, password=args.password)
    _out(report.to_json(allow_untrusted=args.allow_untrusted) if args.json else str(report))
    why = report.rejection(allow_untrusted=args.allow_untrusted)
    if why is not None and report.verdict == Verdict.COMPLIANT:  # the verdict line alone would read as a pass
        _out(f"not accepted: {why} (--allow-untrusted accepts it)", err=args.json)
    return EXIT_OK if why is None else EXIT_NOT_COMPLIANT


def _registry(location: str | None, *, existing: bool) -> Any:
    """The registry a --registry value names (a SQLite file, postgresql://..., or an http(s):// resolver); a file
    that should exist (verify, serve) and does not is a usage error, not a new empty registry."""
    from .registry import Registry

    if not location:
        return None
    if existing and "://" not in location and location != ":memory:" and not Path(location).exists():
        _fail(f"{location}: no such registry")
    return Registry.open(location)


def stress(args: Args) -> int:
    """Apply what platforms do to uploads, verify each version: exit 1 if the watermark (text/PDF: label) is lost."""
    from . import TrustStore
    from .io import check_destination, write_atomic
    from .survival import render
    from .survival import stress as run_stress

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
    from .keys import Signer
    from .rights.actions import write_optout, write_well_known
    from .rights.vocab import TrainingPolicy

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
    from .keys import TrustStore
    from .rights.actions import check_tree, training_allowed

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
    from .dataset import verify_manifest, write_manifest
    from .keys import Signer, TrustStore

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
    from . import batch as batch_mod

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
        from .distributed import run_dask

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
_SERVE_LIMITS = (
    "max_upload",
    "max_pixels",
    "spool_threshold",
    "memory_budget",
    "spool_budget",
    "spool_dir",
    "max_concurrency",
    "express_slots",
    "express_bytes",
    "timeout_s",
    "header_timeout_s",
    "body_timeout_s",
    "min_upload_rate",
    "keep_alive_s",
    "max_connections",
    "mark_rate",
    "mark_burst",
)


def serve(args: Args) -> int:
    """Run the HTTP upload-verification service (GET / page, POST /verify, optional POST /mark, GET /healthz)."""
    from . import Signer, TrustStore

    try:
        from .server import DEFAULT_FORMAT_MAX_BYTES, ServiceLimits, run
        from .server.auth import check_exposure, load_token
    except ImportError:
        _fail("the service needs its extra: pip install 'kzlabel[serve]'")
    if args.mark_key is not None and not (args.owner and args.system):
        _fail("--mark-key needs --owner and --system (they go into every label the service signs)")
    if args.mark_key is None and (args.mark_token_file or args.mark_without_token):
        _fail("--mark-token-file and --mark-without-token only apply with --mark-key")
    if args.mark_token_file and args.mark_without_token:
        _fail("give --mark-token-file or --mark-without-token, not both")
    try:  # before anything is loaded or bound: marking never faces a network without a token
        check_exposure(args.host, args.uds, marking=args.mark_key is not None, token=args.mark_token_file is not None)
    except ValueError as exc:
        _fail(str(exc))
    if args.mark_key is not None and not (args.mark_token_file or args.mark_without_token):
        _fail("--mark-key needs --mark-token-file (the bearer token POST /mark requires), or --mark-without-token")
    token = load_token(args.mark_token_file) if args.mark_token_file else None
    registry = _registry(args.registry, existing=True)
    if args.mark_key is not None and registry is not None and not registry.writable:
        _fail("--mark-key records every label in the registry: give a SQLite file or a postgresql:// URL")
    settings: dict[str, Any] = {f: getattr(args, f) for f in _SERVE_LIMITS if getattr(args, f) is not None}
    if args.format_limit:
        settings["format_max_bytes"] = {**DEFAULT_FORMAT_MAX_BYTES, **dict(args.format_limit)}
    try:
        limits = ServiceLimits(**settings)
    except ValueError as exc:
        _fail(str(exc).replace("_", "-"))
    run(
        args.host,
        args.port,
        uds=args.uds,
        trust=TrustStore.load(args.trust) if args.trust else None,
        registry=registry,
        signer=Signer.load(args.mark_key) if args.mark_key else None,
        owner=args.owner,
        system=args.system,
        mark_token=token,
        mark_without_token=args.mark_without_token,
        limits=limits,
    )
    return EXIT_OK


def _size(text: str) -> int:
    """A byte count: a number, optionally with K, M or G (powers of 1024): 64M, 1G, 4096."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if raw and raw[-1] in units:
            return int(float(raw[:-1]) * units[raw[-1]])
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 64K, 16M, 1G)") from None


def _format_limit(text: str) -> tuple[str, int]:
    name, sep, size = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FORMAT=SIZE (e.g. text=16M, html=4M), not {text!r}")
    return name.strip().lower(), _size(size)


def version(args: Args) -> int:
    """Print the kzlabel version."""
    _out(__version__)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------- the parser

_LAYERS_HELP = "Subset of c2pa,metadata,watermark,visible."
_LANG_HELP = "Notice languages, e.g. kk,ru,en (default)."
_TRUST_HELP = "Trust bundle file or keygen folder (repeatable)."
_REGISTRY_HELP = "Registry: a SQLite file or a postgresql:// URL"


def _command(sub: Any, run: Command, name: str | None = None) -> argparse.ArgumentParser:
    doc = (run.__doc__ or "").strip()
    p: argparse.ArgumentParser = sub.add_parser(
        name or run.__name__, help=doc, description=doc, formatter_class=_Formatter
    )
    p.set_defaults(run=run)
    return p


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
    p.add_argument("--registry", help=_REGISTRY_HELP + " to record the label (and its manifest) in.")
    p.add_argument("--pages", default="all", help="Paged documents: stamp all pages or the first.")
    p.add_argument(
        "--video-warning",
        default="both",
        help="Video: opening (full-size, first 2 s), persistent (small corner label) or both.",
    )
    p.add_argument(
        "--audio-notice",
        default="tone",
        help="Audio: tone (the · − · · rhythm), speech (the notice read aloud in --lang) or both.",
    )
    _env(p, "--password", "KZLABEL_PASSWORD", "Password of an encrypted PDF.")
    p.add_argument("--json", action="store_true", help="Print the result as JSON.")

    p = _command(sub, verify)
    p.add_argument("file", type=Path, help="File to check.")
    p.add_argument("--json", action="store_true", help="Print the report as JSON.")
    p.add_argument("--trust", type=Path, action="append", help=_TRUST_HELP)
    p.add_argument(
        "--registry", help=_REGISTRY_HELP + ", or an http(s):// Soft Binding Resolution API, to look watermarks up in."
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
    p.add_argument("--trust", type=Path, action="append", help=_TRUST_HELP)
    p.add_argument("--registry", help=_REGISTRY_HELP + ", or an http(s):// resolver, to look watermarks up in.")
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
    p.add_argument("--registry", help=_REGISTRY_HELP + " to record every label in.")
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

    p = _command(sub, serve)
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    p.add_argument("--port", type=int, default=8080, help="TCP port.")
    p.add_argument("--uds", type=Path, help="Listen on this Unix socket instead of host:port.")
    p.add_argument("--trust", type=Path, action="append", help=_TRUST_HELP)
    p.add_argument(
        "--registry", help=_REGISTRY_HELP + ": watermark lookups, and the C2PA soft binding resolution endpoints."
    )
    p.add_argument("--mark-key", type=Path, help="keygen folder: enables POST /mark (off by default).")
    _env(p, "--owner", "KZLABEL_OWNER", "Owner/holder for /mark.")
    _env(p, "--system", "KZLABEL_SYSTEM", "AI system for /mark.")
    p.add_argument(
        "--mark-token-file", type=Path, metavar="FILE", help="Bearer token POST /mark requires (a mode-600 file)."
    )
    p.add_argument(
        "--mark-without-token", action="store_true", help="Let POST /mark go without a token (loopback host only)."
    )
    # every limit below defaults to its ServiceLimits field (docs/serve.md: "Limits"); sizes take K, M, G
    g = p.add_argument_group("size limits")
    g.add_argument("--max-upload", type=_size, metavar="SIZE", help="Largest upload, any format (413 above). [256M]")
    g.add_argument(
        "--format-limit",
        type=_format_limit,
        action="append",
        metavar="FORMAT=SIZE",
        help="Largest upload of a format family (text, image, pdf, audio, video) or id (html, png, wav...); "
        "repeatable. [text=16M image=64M pdf=64M]",
    )
    g.add_argument("--max-pixels", type=int, metavar="N", help="Largest image, in pixels. [25000000]")
    g = p.add_argument_group("memory")
    g.add_argument("--spool-threshold", type=_size, metavar="SIZE", help="Largest body kept in memory. [1M]")
    g.add_argument("--memory-budget", type=_size, metavar="SIZE", help="All in-memory bodies together. [32M]")
    g.add_argument("--spool-budget", type=_size, metavar="SIZE", help="All spooled bodies together (503 over). [4G]")
    g.add_argument("--spool-dir", type=Path, metavar="DIR", help="Where uploads spool. [system temp folder]")
    g = p.add_argument_group("time and CPU")
    g.add_argument("--max-concurrency", type=int, metavar="N", help="Jobs running at once. [2]")
    g.add_argument("--express-slots", type=int, metavar="N", help="Extra job slots for small uploads only. [1]")
    g.add_argument("--express-bytes", type=_size, metavar="SIZE", help="What counts as a small upload. [1M]")
    g.add_argument("--timeout", dest="timeout_s", type=float, metavar="S", help="A job's time budget (504). [120]")
    g = p.add_argument_group("connections")
    g.add_argument(
        "--header-timeout", dest="header_timeout_s", type=float, metavar="S", help="Time to send the headers. [10]"
    )
    g.add_argument(
        "--body-timeout", dest="body_timeout_s", type=float, metavar="S", help="Longest gap in a body (408). [20]"
    )
    g.add_argument(
        "--min-upload-rate", type=_size, metavar="SIZE", help="Bytes/s a body must average after --body-timeout. [32K]"
    )
    g.add_argument("--keep-alive", dest="keep_alive_s", type=float, metavar="S", help="Idle keep-alive. [5]")
    g.add_argument("--max-connections", type=int, metavar="N", help="Open connections (503 over). [64]")
    g = p.add_argument_group("marking")
    g.add_argument("--mark-rate", type=float, metavar="R", help="POST /mark requests a second per client. [1]")
    g.add_argument("--mark-burst", type=int, metavar="N", help="POST /mark requests a client may send at once. [10]")

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


if __name__ == "__main__":
    sys.exit(main())
