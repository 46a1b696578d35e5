"""docs/coordinator.md documents every config key and every error code."""

from __future__ import annotations

from pathlib import Path

from coordinator.config import defaults
from coordinator.errors import ERRORS

DOC = (Path(__file__).parents[2] / "docs" / "coordinator.md").read_text()


def test_every_config_key_is_documented_with_its_default() -> None:
    for key, value in defaults().items():
        assert f"| `{key}` | `{value}` |" in DOC, key


def test_every_error_code_is_documented() -> None:
    for cls in ERRORS.classes():
        assert f"| {cls.code} | `{cls.name}` | `{cls.__name__}` |" in DOC, cls.name
