"""Sans-IO bookkeeping of the client's watchers (ZooKeeper's ZKWatchManager).

One-shot watchers are kept per kind and path and removed when they fire;
persistent watchers stay until removed. ``fire`` decides which callbacks an
event reaches, ``set_watches_payload`` lists everything to re-register after a
reconnect.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from enum import Enum
from typing import Any

from coordinator.protocol import EventType, WatchedEvent

# A watcher is any hashable callable; the registry never calls it.
Watcher = Callable[[WatchedEvent], Any]


class WatchKind(Enum):
    DATA = "data"  # get(watch=...), exists(watch=...) on an existing node
    EXIST = "exist"  # exists(watch=...) on a missing node: fires on creation
    CHILD = "child"  # get_children(watch=...)
    PERSISTENT = "persistent"
    PERSISTENT_RECURSIVE = "persistent_recursive"


ONE_SHOT_KINDS = (WatchKind.DATA, WatchKind.EXIST, WatchKind.CHILD)
PERSISTENT_KINDS = (WatchKind.PERSISTENT, WatchKind.PERSISTENT_RECURSIVE)

# Which one-shot kinds an event type triggers (as ZooKeeper's materialize()).
_TRIGGERS: dict[str, tuple[WatchKind, ...]] = {
    EventType.CREATED: (WatchKind.DATA, WatchKind.EXIST),
    EventType.DATA_CHANGED: (WatchKind.DATA, WatchKind.EXIST),
    EventType.DELETED: (WatchKind.DATA, WatchKind.EXIST, WatchKind.CHILD),
    EventType.CHILDREN_CHANGED: (WatchKind.CHILD,),
}

# REMOVE_WATCHES kinds -> the registry kinds they cover.
REMOVE_KINDS: dict[str, tuple[WatchKind, ...]] = {
    "data": (WatchKind.DATA, WatchKind.EXIST),
    "child": (WatchKind.CHILD,),
    "persistent": PERSISTENT_KINDS,
    "any": tuple(WatchKind),
}


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a/b/c", "/a/b", "/a", "/"]``."""
    out = [path]
    while path != "/":
        path = path.rsplit("/", 1)[0] or "/"
        out.append(path)
    return out


class WatchRegistry:
    """Watchers by kind and path; each path's watchers in registration order."""

    def __init__(self) -> None:
        self._watchers: dict[WatchKind, dict[str, dict[Hashable, None]]] = {
            kind: {} for kind in WatchKind
        }

    def add(self, kind: WatchKind, path: str, watcher: Watcher) -> bool:
        """Register ``watcher``; False when it was already registered there."""
        by_path = self._watchers[kind].setdefault(path, {})
        if watcher in by_path:
            return False
        by_path[watcher] = None
        return True

    def discard(self, kind: WatchKind, path: str, watcher: Watcher) -> bool:
        """Unregister one watcher; False when it was not registered."""
        by_path = self._watchers[kind].get(path)
        if by_path is None or watcher not in by_path:
            return False
        del by_path[watcher]
        if not by_path:
            del self._watchers[kind][path]
        return True

    def move(self, old: WatchKind, new: WatchKind, path: str, watcher: Watcher) -> None:
        """Re-file a watcher (an exists() watch turns out to be a data watch)."""
        if self.discard(old, path, watcher):
            self.add(new, path, watcher)

    def has(self, kind: WatchKind, path: str) -> bool:
        """Whether any watcher of ``kind`` is registered on ``path``."""
        return path in self._watchers[kind]

    def watchers(self, kind: WatchKind, path: str) -> list[Watcher]:
        """The watchers of ``kind`` on ``path``, in registration order."""
        return list(self._watchers[kind].get(path, {}))  # type: ignore[arg-type]

    def remove(self, path: str, kinds: tuple[WatchKind, ...]) -> int:
        """Drop every watcher of these kinds on ``path``; returns how many."""
        removed = 0
        for kind in kinds:
            removed += len(self._watchers[kind].pop(path, {}))
        return removed

    def clear_one_shot(self) -> None:
        """The session is lost: one-shot watches died with it on the server."""
        for kind in ONE_SHOT_KINDS:
            self._watchers[kind].clear()

    def clear(self) -> None:
        """Drop every watcher (the client closed its session)."""
        for by_path in self._watchers.values():
            by_path.clear()

    def __len__(self) -> int:
        return sum(len(w) for by_path in self._watchers.values() for w in by_path.values())

    def fire(self, event: WatchedEvent) -> list[Watcher]:
        """The watchers ``event`` reaches, each once; one-shot ones are removed."""
        hit: dict[Hashable, None] = {}
        for kind in _TRIGGERS.get(event.type, ()):
            hit.update(self._watchers[kind].pop(event.path, {}))
        hit.update(self._watchers[WatchKind.PERSISTENT].get(event.path, {}))
        if event.type != EventType.CHILDREN_CHANGED:
            # Recursive watches see every node's own events but no child-list events.
            recursive = self._watchers[WatchKind.PERSISTENT_RECURSIVE]
            for ancestor in _ancestors(event.path):
                hit.update(recursive.get(ancestor, {}))
        return list(hit)  # type: ignore[arg-type]

    def set_watches_payload(self, last_zxid: int) -> dict[str, Any] | None:
        """The SET_WATCHES request that re-registers everything; None when empty."""
        payload: dict[str, Any] = {"last_zxid": last_zxid}
        for kind in WatchKind:
            payload[kind.value] = sorted(self._watchers[kind])
        if not any(payload[kind.value] for kind in WatchKind):
            return None
        return payload
