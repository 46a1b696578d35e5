"""Znode path rules (ZooKeeper's PathUtils) and helpers."""

from __future__ import annotations

import pytest

from coordinator.errors import InvalidPathError
from coordinator.paths import (
    MAX_PATH_BYTES,
    ancestors,
    is_under,
    join,
    name_of,
    parent_of,
    validate_path,
)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/a",
        "/a/b/c",
        "/with space",
        "/ünïcødé/路径",
        "/a.b",
        "/...",
        "/a-b_c:d",
        "/0000000001",
    ],
)
def test_valid(path: str) -> None:
    assert validate_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "a",
        "a/b",
        "//",
        "/a/",
        "/a//b",
        "/.",
        "/..",
        "/a/./b",
        "/a/../b",
        "/a/.",
        "/nul\x00byte",
        "/tab\there",
        "/new\nline",
        "/del\x7f",
        "/c1\x85",
        "/private\ue000use",
        "/special\ufff0",
    ],
)
def test_invalid(path: str) -> None:
    with pytest.raises(InvalidPathError):
        validate_path(path)


@pytest.mark.parametrize("value", [None, 1, b"/a", ["/a"]])
def test_not_a_string(value: object) -> None:
    with pytest.raises(InvalidPathError):
        validate_path(value)


def test_length_limit_counts_utf8_bytes() -> None:
    assert validate_path("/" + "a" * (MAX_PATH_BYTES - 1))
    with pytest.raises(InvalidPathError):
        validate_path("/" + "a" * MAX_PATH_BYTES)
    with pytest.raises(InvalidPathError):
        validate_path("/" + "é" * (MAX_PATH_BYTES // 2))  # 2 bytes each


def test_sequential_may_end_with_slash() -> None:
    assert validate_path("/q/", sequential=True) == "/q/"
    assert validate_path("/", sequential=True) == "/"
    with pytest.raises(InvalidPathError):
        validate_path("/q//", sequential=True)
    with pytest.raises(InvalidPathError):
        validate_path("/q/")


def test_helpers() -> None:
    assert parent_of("/a") == "/"
    assert parent_of("/a/b/c") == "/a/b"
    assert name_of("/a/b") == "b"
    assert join("/", "a") == "/a"
    assert join("/a", "b") == "/a/b"
    assert ancestors("/a/b") == ["/a/b", "/a", "/"]
    assert ancestors("/") == ["/"]
    assert is_under("/a/b", "/a") and is_under("/a", "/a") and is_under("/x", "/")
    assert not is_under("/ab", "/a") and not is_under("/a", "/a/b")
