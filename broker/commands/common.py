"""What the console tools share: ``--bootstrap``, error reporting and exit codes.

Exit codes: 0 success; 1 the broker answered with an error (or some records
failed); 2 bad usage; 3 no broker reachable at the bootstrap address.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from client.errors import NoBrokersAvailableError
from client.wire import RivuletError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class ToolError(Exception):
    """A failure the tool reports on one line and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        default=DEFAULT_BOOTSTRAP,
        metavar="HOST:PORT",
        help=f"a broker of the cluster (default {DEFAULT_BOOTSTRAP})",
    )


def report(prog: str, error: BaseException | str) -> None:
    print(f"{prog}: {error}", file=sys.stderr)


def run_client(prog: str, main: Callable[[], int]) -> int:
    """Run a tool body built on the clients; its failures are reported on one line and
    become the exit code (see the module docstring)."""
    try:
        return main()
    except ToolError as exc:
        report(prog, exc)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # the reader of our output went away (``| head``)
    except NoBrokersAvailableError as exc:
        report(prog, exc)
        return EXIT_UNREACHABLE
    except (RivuletError, TimeoutError) as exc:
        report(prog, exc)
        return EXIT_FAILED
    except (TypeError, ValueError) as exc:
        report(prog, exc)
        return EXIT_USAGE
