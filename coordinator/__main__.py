"""``python -m coordinator`` is the ``coordinator`` command."""

from coordinator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
