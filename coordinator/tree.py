"""The in-memory znode tree (sans-IO): nodes, Stat bookkeeping, reaping candidates.

This module only applies already validated changes; deciding whether a change
is allowed is :mod:`coordinator.state_machine`'s job. Every mutator takes the
zxid (and time) of the transaction doing it, so the tree is a pure function of
the sequence of applied transactions.

Bookkeeping follows ZooKeeper: a create or delete of a child bumps the parent's
``cversion`` and sets its ``pzxid``; a set bumps ``version`` and sets ``mzxid``
and ``mtime``. ``ephemeral_owner`` is the owning session id for ephemerals and 0
for every other mode (containers and TTL nodes keep their mode in the node).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from coordinator.paths import ROOT, join, name_of, parent_of
from coordinator.protocol import CreateMode, Stat

_CONTAINER = int(CreateMode.CONTAINER)
_TTL_MODES = frozenset(int(m) for m in CreateMode if m.is_ttl)


class Node:
    """One znode: data, Stat fields, child names, and its create mode."""

    __slots__ = (
        "children",
        "ctime",
        "cversion",
        "czxid",
        "data",
        "mode",
        "mtime",
        "mzxid",
        "owner",
        "pzxid",
        "ttl_ms",
        "version",
    )

    def __init__(
        self,
        data: bytes,
        zxid: int,
        time_ms: int,
        mode: int = 0,
        owner: int = 0,
        ttl_ms: int = 0,
    ) -> None:
        self.data = data
        self.czxid = zxid
        self.mzxid = zxid
        self.pzxid = zxid
        self.ctime = time_ms
        self.mtime = time_ms
        self.version = 0
        self.cversion = 0
        self.owner = owner
        self.mode = mode
        self.ttl_ms = ttl_ms
        self.children: set[str] = set()

    def stat_wire(self) -> list[int]:
        """The Stat as sent on the wire (see protocol.Stat.to_wire)."""
        return [
            self.czxid,
            self.mzxid,
            self.pzxid,
            self.ctime,
            self.mtime,
            self.version,
            self.cversion,
            self.owner,
            len(self.data),
            len(self.children),
        ]

    def stat(self) -> Stat:
        return Stat(*self.stat_wire())


class DataTree:
    """Path -> Node, with indexes for ephemerals, containers and TTL nodes."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {ROOT: Node(b"", 0, 0)}
        # session id -> paths of its ephemerals
        self.ephemerals: dict[int, set[str]] = {}
        # Containers that had a child and now have none (ZooKeeper's ContainerManager rule).
        self.empty_containers: set[str] = set()
        self.ttl_nodes: set[str] = set()

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, path: str) -> Node | None:
        return self.nodes.get(path)

    def children_sorted(self, node: Node) -> list[str]:
        return sorted(node.children)

    @property
    def ephemeral_count(self) -> int:
        return sum(len(paths) for paths in self.ephemerals.values())

    # ------------------------------------------------------------------ mutators

    def create(
        self,
        path: str,
        data: bytes,
        mode: int,
        owner: int,
        ttl_ms: int,
        zxid: int,
        time_ms: int,
    ) -> Node:
        parent_path = parent_of(path)
        parent = self.nodes[parent_path]
        node = Node(data, zxid, time_ms, mode, owner, ttl_ms)
        parent.children.add(name_of(path))
        parent.cversion += 1
        parent.pzxid = zxid
        self.nodes[path] = node
        if parent.mode == _CONTAINER:
            self.empty_containers.discard(parent_path)
        if owner:
            self.ephemerals.setdefault(owner, set()).add(path)
        if mode in _TTL_MODES:
            self.ttl_nodes.add(path)
        return node

    def delete(self, path: str, zxid: int) -> Node:
        node = self.nodes.pop(path)
        parent_path = parent_of(path)
        parent = self.nodes[parent_path]
        parent.children.discard(name_of(path))
        parent.cversion += 1
        parent.pzxid = zxid
        if parent.mode == _CONTAINER and not parent.children:
            self.empty_containers.add(parent_path)
        if node.owner:
            owned = self.ephemerals.get(node.owner)
            if owned is not None:
                owned.discard(path)
                if not owned:
                    del self.ephemerals[node.owner]
        if node.mode == _CONTAINER:
            self.empty_containers.discard(path)
        elif node.mode in _TTL_MODES:
            self.ttl_nodes.discard(path)
        return node

    def set_data(self, path: str, data: bytes, zxid: int, time_ms: int) -> Node:
        node = self.nodes[path]
        node.data = data
        node.version += 1
        node.mzxid = zxid
        node.mtime = time_ms
        return node

    # ------------------------------------------------------------------ reaping

    def reapable(self, now_ms: int) -> list[str]:
        """Containers emptied of their last child, and childless TTL nodes unmodified
        for longer than their TTL (ZooKeeper's ContainerManager), in path order."""
        out = list(self.empty_containers)
        nodes = self.nodes
        for path in self.ttl_nodes:
            node = nodes[path]
            if not node.children and now_ms - node.mtime > node.ttl_ms:
                out.append(path)
        out.sort()
        return out

    # ------------------------------------------------------------ serialisation

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every node, parents before children (children in name order)."""
        stack = [ROOT]
        nodes = self.nodes
        while stack:
            path = stack.pop()
            node = nodes[path]
            yield path, node
            stack.extend(join(path, name) for name in sorted(node.children, reverse=True))

    def dump(self) -> list[list[Any]]:
        """Every node as a msgpack-able row, parents first (the snapshot's tree part)."""
        return [
            [
                path,
                node.data,
                node.czxid,
                node.mzxid,
                node.pzxid,
                node.ctime,
                node.mtime,
                node.version,
                node.cversion,
                node.owner,
                node.mode,
                node.ttl_ms,
            ]
            for path, node in self.walk()
        ]

    @classmethod
    def load(cls, rows: list[list[Any]]) -> DataTree:
        """Rebuild a tree from :meth:`dump` rows; raises ValueError on a malformed dump."""
        tree = cls()
        nodes = tree.nodes
        for row in rows:
            if not isinstance(row, list | tuple) or len(row) != 12:
                raise ValueError(f"bad snapshot node row: {row!r}")
            path, data, czxid, mzxid, pzxid, ctime, mtime, version, cversion, owner, mode, ttl = row
            node = Node(data, czxid, ctime, mode, owner, ttl)
            node.mzxid = mzxid
            node.pzxid = pzxid
            node.mtime = mtime
            node.version = version
            node.cversion = cversion
            if path == ROOT:
                nodes[ROOT] = node
                continue
            parent = nodes.get(parent_of(path))
            if parent is None:
                raise ValueError(f"snapshot node {path!r} comes before its parent")
            parent.children.add(name_of(path))
            nodes[path] = node
            if owner:
                tree.ephemerals.setdefault(owner, set()).add(path)
            if mode in _TTL_MODES:
                tree.ttl_nodes.add(path)
        for path, node in nodes.items():
            if node.mode == _CONTAINER and node.cversion > 0 and not node.children:
                tree.empty_containers.add(path)
        return tree
