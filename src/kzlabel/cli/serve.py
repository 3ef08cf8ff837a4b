"""`kzlabel serve`: its options (every service limit is one, defaulting to its ServiceLimits field) and the
checks made before anything binds -- marking never faces a network without a bearer token."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .base import EXIT_OK, REGISTRY_HELP, TRUST_HELP, Args, command, env_option, fail, registry_from

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
    from .. import Signer, TrustStore

    try:
        from ..server import DEFAULT_FORMAT_MAX_BYTES, ServiceLimits, run
        from ..server.auth import check_exposure, load_token
    except ImportError:
        fail("the service needs its extra: pip install 'kzlabel[serve]'")
    if args.mark_key is not None and not (args.owner and args.system):
        fail("--mark-key needs --owner and --system (they go into every label the service signs)")
    if args.mark_key is None and (args.mark_token_file or args.mark_without_token):
        fail("--mark-token-file and --mark-without-token only apply with --mark-key")
    if args.mark_token_file and args.mark_without_token:
        fail("give --mark-token-file or --mark-without-token, not both")
    try:  # before anything is loaded or bound: marking never faces a network without a token
        check_exposure(args.host, args.uds, marking=args.mark_key is not None, token=args.mark_token_file is not None)
    except ValueError as exc:
        fail(str(exc))
    if args.mark_key is not None and not (args.mark_token_file or args.mark_without_token):
        fail("--mark-key needs --mark-token-file (the bearer token POST /mark requires), or --mark-without-token")
    token = load_token(args.mark_token_file) if args.mark_token_file else None
    registry = registry_from(args.registry, existing=True)
    if args.mark_key is not None and registry is not None and not registry.writable:
        fail("--mark-key records every label in the registry: give a SQLite file or a postgresql:// URL")
    settings: dict[str, Any] = {f: getattr(args, f) for f in _SERVE_LIMITS if getattr(args, f) is not None}
    if args.format_limit:
        settings["format_max_bytes"] = {**DEFAULT_FORMAT_MAX_BYTES, **dict(args.format_limit)}
    try:
        limits = ServiceLimits(**settings)
    except ValueError as exc:
        fail(str(exc).replace("_", "-"))
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


def add_serve_command(sub: Any) -> None:
    """The `serve` subcommand and its option groups."""
    p = command(sub, serve)
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    p.add_argument("--port", type=int, default=8080, help="TCP port.")
    p.add_argument("--uds", type=Path, help="Listen on this Unix socket instead of host:port.")
    p.add_argument("--trust", type=Path, action="append", help=TRUST_HELP)
    p.add_argument(
        "--registry", help=REGISTRY_HELP + ": watermark lookups, and the C2PA soft binding resolution endpoints."
    )
    p.add_argument("--mark-key", type=Path, help="keygen folder: enables POST /mark (off by default).")
    env_option(p, "--owner", "KZLABEL_OWNER", "Owner/holder for /mark.")
    env_option(p, "--system", "KZLABEL_SYSTEM", "AI system for /mark.")
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
