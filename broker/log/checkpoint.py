"""Small atomic files: write a temporary, fsync it, rename over, fsync the directory."""

from __future__ import annotations

import os
import zlib

from broker.log.errors import CorruptCheckpoint


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, *, sync: bool = True) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(path) or ".")


def write_checkpoint(path: str, lines: list[str], *, sync: bool = True) -> None:
    """Text checkpoint: the lines, then a trailing crc line over them."""
    body = "".join(line + "\n" for line in lines).encode()
    write_atomic(path, body + f"crc {zlib.crc32(body):08x}\n".encode(), sync=sync)


def read_checkpoint(path: str) -> list[str] | None:
    """Lines of a checkpoint written by write_checkpoint; None if the file is absent."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return None
    idx = data.rstrip(b"\n").rfind(b"\n")
    body, trailer = data[: idx + 1], data[idx + 1 :].strip()
    try:
        ok = trailer == f"crc {zlib.crc32(body):08x}".encode()
        text = body.decode()
    except UnicodeDecodeError as e:
        raise CorruptCheckpoint(f"{path}: not text") from e
    if not ok:
        raise CorruptCheckpoint(f"{path}: crc mismatch")
    return text.splitlines()
