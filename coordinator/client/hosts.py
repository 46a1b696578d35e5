"""Parsing of a ``host:port,host:port`` connect string and the order hosts are tried in."""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_PORT = 2181


@dataclass(frozen=True, slots=True)
class HostAddress:
    """One coordinator server address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _parse_one(item: str) -> HostAddress:
    if item.startswith("["):
        # An IPv6 literal: "[::1]:2181" or "[::1]".
        end = item.find("]")
        if end < 0:
            raise ValueError(f"unterminated IPv6 address in {item!r}")
        host, rest = item[1:end], item[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad host address {item!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, sep, port_text = item.rpartition(":")
        if not sep:
            host, port_text = item, ""
    if not host:
        raise ValueError(f"missing host name in {item!r}")
    if not port_text:
        return HostAddress(host, DEFAULT_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {item!r}")
    return HostAddress(host, int(port_text))


def parse_hosts(hosts: str) -> list[HostAddress]:
    """Parse ``"h1:2181,h2:2182"``; a missing port means 2181. Raises ValueError."""
    if not isinstance(hosts, str):
        raise TypeError(f"hosts must be a string like 'host:port,host:port', got {hosts!r}")
    # A ZooKeeper chroot suffix ("/app") is not supported; reject it rather than misparse.
    if "/" in hosts:
        raise ValueError(f"a chroot path in the connect string is not supported: {hosts!r}")
    items = [item.strip() for item in hosts.split(",")]
    addresses = [_parse_one(item) for item in items if item]
    if not addresses:
        raise ValueError("the connect string names no host")
    return addresses


class HostList:
    """Round-robin over the hosts, starting from a random shuffle (ZooKeeper's
    StaticHostProvider) so that many clients spread over the servers."""

    def __init__(self, addresses: list[HostAddress], *, rng: random.Random | None = None) -> None:
        if not addresses:
            raise ValueError("at least one host is needed")
        self._addresses = list(addresses)
        (rng or random.Random()).shuffle(self._addresses)
        self._next = 0

    def __len__(self) -> int:
        return len(self._addresses)

    @property
    def addresses(self) -> list[HostAddress]:
        """The hosts in the order they are tried."""
        return list(self._addresses)

    def next(self) -> HostAddress:
        """The host to try next; each call moves one step round the ring."""
        address = self._addresses[self._next]
        self._next = (self._next + 1) % len(self._addresses)
        return address
