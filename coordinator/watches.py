"""The watch manager (sans-IO): who is told about which change, as ZooKeeper 3.6.

Watches belong to a *watcher* (the server uses the connection object) and are
dropped with :meth:`WatchManager.remove_watcher`. Tables:

* data: one-shot, set by GET_DATA and EXISTS (also on a missing node, where it
  fires ``created``); fires on created / data_changed / deleted of its path.
* child: one-shot, set by GET_CHILDREN; fires on children_changed / deleted.
* persistent: ADD_WATCH "persistent"; like data + child but not removed by firing.
* recursive: ADD_WATCH "persistent_recursive"; created / data_changed / deleted of
  the path and every descendant, never children_changed.

One change gives a watcher at most one event, however many of its watches match
(ZooKeeper's ``WatcherOrBitSet`` dedup).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from coordinator.errors import NoWatcherError
from coordinator.paths import ancestors
from coordinator.protocol import EventType, WatchMode

W = TypeVar("W", bound=Hashable)

CREATED = EventType.CREATED
DELETED = EventType.DELETED
DATA_CHANGED = EventType.DATA_CHANGED
CHILDREN_CHANGED = EventType.CHILDREN_CHANGED

DATA = "data"
CHILD = "child"
PERSISTENT = WatchMode.PERSISTENT
RECURSIVE = WatchMode.PERSISTENT_RECURSIVE
REMOVE_KINDS = ("data", "child", "persistent", "any")


@dataclass(frozen=True, slots=True)
class NodeZxids:
    """What SET_WATCHES needs to know about a node that exists."""

    czxid: int
    mzxid: int
    pzxid: int


class WatchManager(Generic[W]):
    """Watch tables plus a reverse index for dropping a watcher's watches."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, set[W]]] = {
            DATA: {},
            CHILD: {},
            PERSISTENT: {},
            RECURSIVE: {},
        }
        self._data = self._tables[DATA]
        self._child = self._tables[CHILD]
        self._persistent = self._tables[PERSISTENT]
        self._recursive = self._tables[RECURSIVE]
        self._by_watcher: dict[W, set[tuple[str, str]]] = {}

    # ---------------------------------------------------------------- register

    def _add(self, kind: str, path: str, watcher: W) -> None:
        self._tables[kind].setdefault(path, set()).add(watcher)
        self._by_watcher.setdefault(watcher, set()).add((kind, path))

    def add_data(self, path: str, watcher: W) -> None:
        """A one-shot data/exist watch (GET_DATA, EXISTS)."""
        self._add(DATA, path, watcher)

    def add_child(self, path: str, watcher: W) -> None:
        """A one-shot child watch (GET_CHILDREN)."""
        self._add(CHILD, path, watcher)

    def add_persistent(self, path: str, watcher: W, mode: str) -> None:
        """ADD_WATCH; ``mode`` is "persistent" or "persistent_recursive"."""
        if mode not in (PERSISTENT, RECURSIVE):
            raise ValueError(f"unknown persistent watch mode {mode!r}")
        self._add(mode, path, watcher)

    # ------------------------------------------------------------------ remove

    def _discard(self, kind: str, path: str, watcher: W) -> bool:
        table = self._tables[kind]
        members = table.get(path)
        if members is None or watcher not in members:
            return False
        members.discard(watcher)
        if not members:
            del table[path]
        owned = self._by_watcher.get(watcher)
        if owned is not None:
            owned.discard((kind, path))
            if not owned:
                del self._by_watcher[watcher]
        return True

    def remove(self, path: str, watcher: W, kind: str) -> None:
        """REMOVE_WATCHES: kind "data", "child", "persistent" (both persistent modes)
        or "any"; raises NoWatcherError when nothing matched."""
        if kind == "any":
            kinds: tuple[str, ...] = (DATA, CHILD, PERSISTENT, RECURSIVE)
        elif kind == "persistent":
            kinds = (PERSISTENT, RECURSIVE)
        elif kind in (DATA, CHILD):
            kinds = (kind,)
        else:
            raise ValueError(f"unknown watch kind {kind!r}")
        removed = False
        for k in kinds:
            removed = self._discard(k, path, watcher) or removed
        if not removed:
            raise NoWatcherError(f"no {kind} watch on {path}")

    def remove_watcher(self, watcher: W) -> int:
        """Drop every watch of ``watcher`` (its connection closed); returns how many."""
        owned = self._by_watcher.pop(watcher, None)
        if not owned:
            return 0
        for kind, path in owned:
            table = self._tables[kind]
            members = table.get(path)
            if members is not None:
                members.discard(watcher)
                if not members:
                    del table[path]
        return len(owned)

    # ----------------------------------------------------------------- queries

    def __len__(self) -> int:
        return sum(len(owned) for owned in self._by_watcher.values())

    def watches_of(self, watcher: W) -> set[tuple[str, str]]:
        """(kind, path) pairs registered by ``watcher``."""
        return set(self._by_watcher.get(watcher, ()))

    @property
    def empty(self) -> bool:
        return not self._by_watcher

    # ----------------------------------------------------------------- trigger

    def _fire_one_shot(self, kind: str, path: str, out: dict[W, None]) -> None:
        members = self._tables[kind].pop(path, None)
        if members is None:
            return
        by_watcher = self._by_watcher
        for watcher in members:
            out[watcher] = None
            owned = by_watcher.get(watcher)
            if owned is not None:
                owned.discard((kind, path))
                if not owned:
                    del by_watcher[watcher]

    def trigger(self, event: str, path: str) -> list[W]:
        """The watchers to notify of ``event`` on ``path``; one-shot watches are consumed.

        ``event`` is one of protocol.EventType; for children_changed ``path`` is the parent.
        """
        if not self._by_watcher:
            return []
        # An insertion-ordered dict doubles as the dedup set, keeping output deterministic.
        out: dict[W, None] = {}
        if event == CHILDREN_CHANGED:
            self._fire_one_shot(CHILD, path, out)
        else:
            self._fire_one_shot(DATA, path, out)
            if event == DELETED:
                self._fire_one_shot(CHILD, path, out)
        persistent = self._persistent.get(path)
        if persistent:
            out.update(dict.fromkeys(persistent))
        if self._recursive and event != CHILDREN_CHANGED:
            recursive = self._recursive
            for prefix in ancestors(path):
                members = recursive.get(prefix)
                if members:
                    out.update(dict.fromkeys(members))
        return list(out)

    # ------------------------------------------------------------- set_watches

    def set_watches(
        self,
        watcher: W,
        last_zxid: int,
        lookup: Callable[[str], NodeZxids | None],
        *,
        data: Iterable[str] = (),
        exist: Iterable[str] = (),
        child: Iterable[str] = (),
        persistent: Iterable[str] = (),
        persistent_recursive: Iterable[str] = (),
    ) -> list[tuple[str, str]]:
        """Re-register a reconnected client's watches; returns the (event, path) pairs to
        fire at once because the watched condition changed after ``last_zxid``."""
        fired: list[tuple[str, str]] = []
        for path in data:
            node = lookup(path)
            if node is None:
                fired.append((DELETED, path))
            elif node.mzxid > last_zxid:
                fired.append((DATA_CHANGED, path))
            else:
                self.add_data(path, watcher)
        for path in exist:
            node = lookup(path)
            if node is not None and node.czxid > last_zxid:
                fired.append((CREATED, path))
            else:
                # Still missing, or existing since before last_zxid: a data watch
                # covers both (it fires created / data_changed / deleted).
                self.add_data(path, watcher)
        for path in child:
            node = lookup(path)
            if node is None:
                fired.append((DELETED, path))
            elif node.pzxid > last_zxid:
                fired.append((CHILDREN_CHANGED, path))
            else:
                self.add_child(path, watcher)
        for path in persistent:
            self.add_persistent(path, watcher, PERSISTENT)
        for path in persistent_recursive:
            self.add_persistent(path, watcher, RECURSIVE)
        return fired
