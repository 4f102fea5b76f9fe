"""The ``llmeval`` command.

Each command group lives beside the code it drives and exposes ``register(subparsers)``, which
adds its sub-parser and sets ``func`` (``args -> exit code``) as the parser default. Errors a
user can fix are raised as :class:`CLIError` and printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from pytest_llmeval.errors import CLIError

# module path -> registered by that module's ``register(subparsers)``
_COMMAND_MODULES = (
    "pytest_llmeval.cli.ab",
    "pytest_llmeval.cli.online",
    "pytest_llmeval.cli.report",
    "pytest_llmeval.cli.gate",
    "pytest_llmeval.cli.calibrate",
)


def command_group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add ``llmeval NAME`` with its own sub-commands; bare ``llmeval NAME`` prints its help."""
    group = subparsers.add_parser(name, help=help, description=description)
    sub = group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")

    def show_help(args: argparse.Namespace) -> int:
        group.print_help()
        return 2

    group.set_defaults(func=show_help)
    return sub


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmeval",
        description="Statistics, online metrics, the flywheel and reports for pytest-llmeval.",
    )
    from pytest_llmeval import __version__

    parser.add_argument("--version", action="version", version=f"llmeval {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except CLIError as exc:
        print(f"llmeval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmeval: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
