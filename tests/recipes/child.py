"""A recipe participant in its own process, for the crash tests.

    python -m tests.recipes.child lock      HOSTS PATH WORKDIR [options]
    python -m tests.recipes.child semaphore HOSTS PATH WORKDIR --max-leases N
    python -m tests.recipes.child election  HOSTS PATH WORKDIR

Each loops until SIGTERM: acquire (or lead), do a short critical section, release.
Overlap is detected with the operating system's own locks: inside the critical
section the child holds ``flock(LOCK_EX | LOCK_NB)`` on a slot file in WORKDIR
(``slot-0`` for a lock or a leader, ``slot-0``..``slot-{N-1}`` for a semaphore).
The kernel releases a flock the moment its process dies, so a SIGKILLed holder
frees its slot at once, while a live holder keeps it: a participant that
cannot get a free slot has proved that mutual exclusion (or the lease bound)
was broken. It records ``VIOLATION`` in the event log and exits with code 3.

Events are appended (O_APPEND, one write per line) to WORKDIR/events as
``<monotonic> <pid> <event>``: ``ready``, ``enter``, ``exit``, ``lost``,
``leader``, ``VIOLATION``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

from coordinator.client import CoordinatorClient
from coordinator.recipes import HoldState, LeaderElection, Lock, Semaphore

VIOLATION_EXIT = 3


class Child:
    def __init__(self, workdir: Path, slots: int) -> None:
        self.workdir = workdir
        self.events = os.open(workdir / "events", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.slot_fds = [
            os.open(workdir / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o644) for i in range(slots)
        ]
        self.stop = threading.Event()
        self.lost = threading.Event()
        self.held_slot: int | None = None

    def log(self, event: str) -> None:
        os.write(self.events, f"{time.monotonic():.6f} {os.getpid()} {event}\n".encode())

    def on_lost(self, state: HoldState) -> None:
        self.lost.set()
        self.log(f"lost {state.value}")

    def take_slot(self) -> None:
        for index, fd in enumerate(self.slot_fds):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            self.held_slot = index
            return
        self.log("VIOLATION no free slot")
        os._exit(VIOLATION_EXIT)

    def drop_slot(self) -> None:
        if self.held_slot is not None:
            fcntl.flock(self.slot_fds[self.held_slot], fcntl.LOCK_UN)
            self.held_slot = None

    def critical_section(self, max_hold: float, exact: bool = False) -> None:
        """Hold a slot for a random short time (``max_hold`` if ``exact``), giving
        it up at once if told that what protects it may be lost."""
        self.take_slot()
        self.log("enter")
        end = time.monotonic() + (max_hold if exact else random.uniform(0.0, max_hold))
        while time.monotonic() < end and not self.lost.is_set() and not self.stop.is_set():
            time.sleep(0.005)
        self.drop_slot()
        self.log("exit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["lock", "semaphore", "election"])
    parser.add_argument("hosts")
    parser.add_argument("path")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    parser.add_argument("--max-leases", type=int, default=1)
    parser.add_argument("--max-hold", type=float, default=0.05)
    parser.add_argument("--lead-for", type=float, default=0.3)
    args = parser.parse_args(argv)

    child = Child(args.workdir, args.max_leases if args.role == "semaphore" else 1)
    signal.signal(signal.SIGTERM, lambda *_: child.stop.set())
    with CoordinatorClient(args.hosts, session_timeout=args.session_timeout) as zk:
        child.log("ready")
        if args.role == "lock":
            lock = Lock(zk, args.path, f"pid-{os.getpid()}", on_lost=child.on_lost)
            while not child.stop.is_set():
                if not lock.acquire(timeout=0.5):
                    continue
                child.lost.clear()
                try:
                    if lock.is_acquired:
                        child.critical_section(args.max_hold)
                finally:
                    lock.release()
        elif args.role == "semaphore":
            sem = Semaphore(
                zk,
                args.path,
                max_leases=args.max_leases,
                identifier=f"pid-{os.getpid()}",
                on_lost=child.on_lost,
            )
            while not child.stop.is_set():
                if not sem.acquire(timeout=0.5):
                    continue
                child.lost.clear()
                try:
                    if sem.is_acquired:
                        child.critical_section(args.max_hold)
                finally:
                    sem.release()
        else:
            election = LeaderElection(
                zk,
                args.path,
                f"pid-{os.getpid()}",
                data=str(os.getpid()).encode(),
                on_lost=child.on_lost,
            )
            while not child.stop.is_set():
                if not election.campaign(timeout=0.5):
                    continue
                child.lost.clear()
                try:
                    if election.is_leader:
                        child.log("leader")
                        child.critical_section(args.lead_for, exact=True)
                finally:
                    election.resign()
    return 0


if __name__ == "__main__":
    sys.exit(main())
