"""The ``coordinator`` command: ``serve`` and the zkCli-like tools."""

from __future__ import annotations

import argparse
import sys

from coordinator import cli_commands, serve_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coordinator", description="Rivulet coordinator")
    cli_commands.add_client_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_command.add_parser(sub)
    cli_commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))
