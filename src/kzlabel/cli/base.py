"""What every command of the `kzlabel` command line shares: exit codes, the one-line usage error, argparse's
parser and help format, options that fall back to environment variables, and the --registry value."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_NOT_COMPLIANT, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

Args = argparse.Namespace
Command = Callable[[Args], int]

TRUST_HELP = "Trust bundle file or keygen folder (repeatable)."
REGISTRY_HELP = "Registry: a SQLite file or a postgresql:// URL"


class UsageProblem(Exception):
    """A command line that cannot be run as given (options missing or contradicting); main() prints it."""


def fail(message: str) -> NoReturn:
    raise UsageProblem(message)


def split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def out(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout)


class Formatter(argparse.HelpFormatter):
    """argparse's help with a capitalised usage line and each option's default where it says something."""

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        from_env = "[env: " in text  # never echo an environment value (it may be a password)
        if action.default not in (None, False, True, [], "", argparse.SUPPRESS) and not from_env:
            text += " [default: %(default)s]"
        return text


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are raised (main() prints them on one line), not printed and exited on."""

    def error(self, message: str) -> NoReturn:
        message = message.replace("the following arguments are required:", "missing argument:")
        fail(f"{message} (see '{self.prog} --help')")


def env_option(parser: argparse.ArgumentParser, flag: str, env: str, help: str = "", **kw: Any) -> None:
    """An option that falls back to environment variable ``env``; checked by :func:`need` when required."""
    parser.add_argument(flag, default=os.environ.get(env, kw.pop("default", None)), help=f"{help} [env: {env}]", **kw)


def need(args: Args, *flags: str) -> None:
    """Options a command cannot run without (given on the command line or through their environment variable)."""
    missing = [f for f in flags if getattr(args, f.lstrip("-").replace("-", "_")) in (None, "")]
    if missing:
        fail(f"missing option {', '.join(missing)} (see 'kzlabel {args.command} --help')")


def registry_from(location: str | None, *, existing: bool) -> Any:
    """The registry a --registry value names (a SQLite file, postgresql://..., or an http(s):// resolver); a file
    that should exist (verify, serve) and does not is a usage error, not a new empty registry."""
    from ..registry import Registry

    if not location:
        return None
    if existing and "://" not in location and location != ":memory:" and not Path(location).exists():
        fail(f"{location}: no such registry")
    return Registry.open(location)


def command(sub: Any, run: Command, name: str | None = None) -> argparse.ArgumentParser:
    doc = (run.__doc__ or "").strip()
    p: argparse.ArgumentParser = sub.add_parser(
        name or run.__name__, help=doc, description=doc, formatter_class=Formatter
    )
    p.set_defaults(run=run)
    return p
