"""The documentation stays true to the code.

- docs/configuration.md and docs/api.md are exactly what scripts/gen_docs.py
  generates now (regenerate with ``make docs``), and every config option has a
  documented row;
- every command shown in a fenced console/sh block of README.md or docs/*.md
  (``$ broker ...``, ``$ coordinator ...``, ``$ python -m bench ...``,
  ``$ make ...``, also as ``.venv/bin/...``; in sh blocks without prompts, every
  line) parses with the real argument parser (or names a real make target);
- blocks preceded by ``<!-- test: run -->`` run for real, in order, against a
  broker started for the file (its embedded coordinator serves the coordinator
  commands): console lines must exit 0 and print what the block shows (``...``
  matches anything: within a line, or any number of lines on a line of its own;
  runs of whitespace compare equal), Python blocks must exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.procs import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_MARK = "<!-- test: run -->"
SHELL_LANGS = {"console", "sh", "shell", "bash", "shell-session"}
FENCE = re.compile(r"^(```+|~~~+)\s*([\w-]*)")
EMBEDDED = re.compile(r"embedded coordinator listening on (\S+):(\d+)")
BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 60.0


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


# ------------------------------------------------------------------ generated references


def test_configuration_md_is_current() -> None:
    assert GEN.CONFIGURATION.read_text() == GEN.configuration_md(), (
        "docs/configuration.md is out of date: run `make docs` (python scripts/gen_docs.py)"
    )


def test_api_md_covers_the_public_api() -> None:
    """Every public name has its entry in docs/api.md, and every entry still exists.

    (The text of the entries follows the docstrings, which change often; run
    ``make docs`` after editing them. ``python scripts/gen_docs.py --check``
    compares the whole file, for a release.)"""
    text = GEN.API.read_text()
    headings = set(re.findall(r"^### `([\w.]+)`", text, re.MULTILINE))
    errors = set(re.findall(r"^\| `(\w+)` \| `", text, re.MULTILINE))
    expected: set[str] = set()
    for module_name in GEN.API_MODULES:
        module = importlib.import_module(module_name)
        for name in GEN.api_names(module_name):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                assert name in errors, f"{module_name}.{name} is missing from docs/api.md"
            else:
                expected.add(f"{module_name}.{name}")
    missing = expected - headings
    assert not missing, f"missing from docs/api.md (run `make docs`): {sorted(missing)}"
    top_level = {h for h in headings if h.rpartition(".")[0] in GEN.API_MODULES}
    gone = top_level - expected
    assert not gone, f"docs/api.md documents names that no longer exist: {sorted(gone)}"


def test_every_config_option_is_documented() -> None:
    from broker.config import BrokerConfig
    from broker.topic_config import TOPIC_CONFIGS
    from client.config import AdminConfig, ConsumerConfig, ProducerConfig
    from coordinator.config import CoordinatorConfig

    text = GEN.CONFIGURATION.read_text()
    for cls in (BrokerConfig, CoordinatorConfig, ProducerConfig, ConsumerConfig, AdminConfig):
        docs = GEN.class_field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no documentation in its source"
            assert f"| `{f.name}` |" in text, (
                f"{cls.__name__}.{f.name} missing from configuration.md"
            )
    for name, definition in TOPIC_CONFIGS.items():
        assert definition.doc, f"topic config {name} has no documentation"
        assert f"| `{name}` |" in text, f"topic config {name} missing from configuration.md"


# ------------------------------------------------------------------ extracting commands


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    lines: tuple[str, ...]
    runnable: bool


@dataclasses.dataclass(frozen=True)
class Command:
    path: Path
    line: int
    text: str
    expected: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        fence, lang = match.group(1), match.group(2).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        out.append(Block(path, start + 1, lang, tuple(body), previous == RUN_MARK))
        previous = ""
        i += 1
    return out


def commands(block: Block) -> list[Command]:
    """A console block's ``$ `` lines (with the output shown after each); every line of
    a script block (sh, bash, shell) that is not a comment."""
    if block.lang not in SHELL_LANGS:
        return []
    if block.lang != "console" and not any(line.startswith("$ ") for line in block.lines):
        return [
            Command(block.path, block.line + offset, line.strip(), ())
            for offset, line in enumerate(block.lines, 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    out: list[Command] = []
    current: tuple[int, str] | None = None
    expected: list[str] = []
    for offset, line in enumerate(block.lines, 1):
        if line.startswith("$ "):
            if current is not None:
                out.append(Command(block.path, current[0], current[1], tuple(expected)))
            current, expected = (block.line + offset, line[2:].strip()), []
        elif current is not None:
            expected.append(line)
    if current is not None:
        out.append(Command(block.path, current[0], current[1], tuple(expected)))
    return out


ALL_BLOCKS = [b for path in DOC_FILES for b in blocks(path)]
ALL_COMMANDS = [c for b in ALL_BLOCKS for c in commands(b)]


def segments(text: str) -> list[list[str]]:
    """The simple commands of a shell line (split at | ; && ||), comments removed."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in ("|", "||", "&&", ";", "&"):
            out.append([])
        else:
            out[-1].append(token)
    return [s for s in out if s]


def program(words: list[str]) -> tuple[str, list[str]] | None:
    """("broker" | "coordinator" | "bench" | "make", its arguments) for our commands."""
    if not words:
        return None
    head = words[0].removeprefix(".venv/bin/").removeprefix("$(BIN)/")
    if head in ("broker", "coordinator", "make"):
        return head, words[1:]
    if (
        head in ("python", "python3")
        and len(words) >= 3
        and words[1] == "-m"
        and words[2] in ("bench", "broker", "coordinator")
    ):
        return words[2], words[3:]
    return None


OUR_COMMANDS = [
    (c, prog, args)
    for c in ALL_COMMANDS
    for words in segments(c.text)
    if (found := program(words)) is not None
    for prog, args in [found]
]


def test_the_docs_show_commands() -> None:
    """The extraction works (a broken fence regex would make every check pass vacuously)."""
    assert len(OUR_COMMANDS) >= 20
    assert {prog for _, prog, _ in OUR_COMMANDS} >= {"broker", "coordinator", "bench", "make"}
    assert sum(b.runnable for b in ALL_BLOCKS) >= 4


def _parse(parser_for: Callable[[], argparse.ArgumentParser], args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            parser_for().parse_args(args)
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue()
    return 0, ""


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.MULTILINE))


@pytest.mark.parametrize(
    ("command", "prog", "args"),
    OUR_COMMANDS,
    ids=[f"{c.where} {prog}" for c, prog, _ in OUR_COMMANDS],
)
def test_documented_command_parses(command: Command, prog: str, args: list[str]) -> None:
    if prog == "make":
        unknown = [a for a in args if "=" not in a and not a.startswith("-")]
        missing = set(unknown) - _make_targets()
        assert not missing, f"{command.where}: no make target {sorted(missing)}"
        return
    if prog == "broker":
        from broker.cli import build_parser as parser_for
    elif prog == "coordinator":
        from coordinator.cli import build_parser as parser_for
    else:
        from bench.__main__ import build_parser, build_report_parser

        parser_for = build_report_parser if args[:1] == ["report"] else build_parser
        args = args[1:] if args[:1] == ["report"] else args
    code, output = _parse(parser_for, args)
    assert code == 0, f"{command.where}: `{command.text}` does not parse:\n{output}"


# ------------------------------------------------------------------ running blocks


def _runnable_files() -> list[Path]:
    return sorted({b.path for b in ALL_BLOCKS if b.runnable})


def output_matches(expected: list[str], actual: str) -> bool:
    """``expected`` (with ``...`` wildcards) against the actual output; whitespace runs
    compare equal and trailing whitespace is ignored."""
    parts: list[str] = []
    for line in expected:
        squeezed = " ".join(line.split())
        if squeezed == "...":
            parts.append(r"(?:[^\n]*\n)*")
        else:
            parts.append(re.escape(squeezed).replace(r"\.\.\.", "[^\n]*") + r"\n")
    text = "".join(" ".join(line.split()) + "\n" for line in actual.splitlines())
    return re.fullmatch("".join(parts), text) is not None


def _skipped(text: str) -> bool:
    """Lines shown for the reader that the test cannot run: servers (the test provides
    one), environment set-up, and anything not ours."""
    programs = [program(words) for words in segments(text)]
    ours = [p for p in programs if p is not None]
    if not ours or any(p[0] in ("make", "bench") for p in ours):
        return True
    return any(p[1][:1] in (["serve"], ["dev-cluster"], ["watch"]) for p in ours)


def _bin_dir(tmp: Path, bootstrap: str) -> Path:
    """``broker`` on PATH, pointed at the test broker (tools get ``--bootstrap``)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    script = bin_dir / "broker"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in serve|dev-cluster|-h|--help|"") '
        f'exec {shlex.quote(str(BIN / "broker"))} "$@";; esac\n'
        f'exec {shlex.quote(str(BIN / "broker"))} "$@" --bootstrap {shlex.quote(bootstrap)}\n'
    )
    script.chmod(0o755)
    return bin_dir


def _run(argv: list[str], env: dict[str, str], cwd: Path, where: str) -> str:
    try:
        done = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{where}: still running after {COMMAND_TIMEOUT:.0f} s") from exc
    assert done.returncode == 0, f"{where}: exit {done.returncode}:\n{done.stdout}"
    return done.stdout


@pytest.fixture
def doc_broker(start_broker: Callable[..., ServerProcess]) -> Iterator[tuple[str, str]]:
    """A broker for one file's blocks: (broker address, embedded coordinator address)."""
    broker = start_broker()
    match = EMBEDDED.search(broker.output())
    assert match, f"no embedded coordinator address in:\n{broker.output()}"
    yield broker.address, f"{match.group(1)}:{match.group(2)}"


@pytest.mark.slow
@pytest.mark.parametrize("path", _runnable_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks(path: Path, doc_broker: tuple[str, str], tmp_path: Path) -> None:
    bootstrap, coordinator = doc_broker
    env = {
        **os.environ,
        "PATH": f"{_bin_dir(tmp_path, bootstrap)}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
        "RIVULET_COORDINATOR": coordinator,
        "PYTHONPATH": str(ROOT),
    }
    ran = 0
    for block in (b for b in ALL_BLOCKS if b.path == path and b.runnable):
        where = f"{path.relative_to(ROOT)}:{block.line}"
        if block.lang == "python":
            code = "\n".join(block.lines)
            code = code.replace("127.0.0.1:9092", bootstrap).replace("127.0.0.1:2181", coordinator)
            _run([sys.executable, "-c", code], env, tmp_path, where)
            ran += 1
            continue
        for command in commands(block):
            if _skipped(command.text):
                continue
            text = re.sub(r"(?<![\w/.])\.venv/bin/", "", command.text)
            output = _run(["bash", "-c", text], env, tmp_path, command.where)
            if command.expected:
                assert output_matches(list(command.expected), output), (
                    f"{command.where}: `{command.text}` printed\n{output}\n"
                    "but the docs show\n" + "\n".join(command.expected)
                )
            ran += 1
    assert ran, f"{path}: runnable blocks without anything to run"


def test_output_matching() -> None:
    assert output_matches(["a ... c", "..."], "a b c\nmore\nlines\n")
    assert output_matches(["x\ty"], "x   y  \n")
    assert not output_matches(["a", "b"], "a\n")
    assert output_matches(["...", "end"], "end\n")
    assert not output_matches(["exit 1"], "exit 0\n")
