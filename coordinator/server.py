"""The coordinator server: the trio shell around the sans-IO state machine.

Request path (one event-loop pass per received batch, no task per request):

1. A connection's reader gets every message completed by one socket read and
   handles them one after another, synchronously.
2. A read is answered from the in-memory tree. A write is prepared, appended to
   the txn log (buffered), applied to the tree at once (so later requests see
   it) and its watch events are queued.
3. Every outgoing message (response or push) is tagged with the zxid it depends
   on: a write's own zxid, for anything else the last zxid applied when it was
   answered. A connection's messages leave strictly in order, each once the log
   is durable up to its tag. The committer task fsyncs; all appends made during
   one fsync share the next (group commit). A small group is fsynced on the
   event loop itself, because handing it to a worker thread and back costs more
   than the fsync; a larger one goes to a worker thread so that requests keep
   being processed meanwhile (``inline_fsync_max_txns``).

So a client never sees state that is not yet durable, every session is answered
in FIFO order, and a watch event always precedes a response reflecting its change
(the event is queued when the change is applied, before any later response).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
import trio

from client.observability import CheckResult, Observability
from client.wire import (
    FramedConnection,
    FrameTooLargeError,
    InternalServerError,
    InvalidRequestError,
    Payload,
    ServerError,
    UndecodableFrame,
    UnsupportedApiError,
    UnsupportedVersionError,
    encode_push,
    encode_response,
)
from client.wire.errors import FrameTooLargeServerError
from client.wire.frames import InvalidMessage, parse_request
from coordinator.config import CoordinatorConfig
from coordinator.errors import (
    AuthFailedError,
    BadArgumentsError,
    SessionExpiredError,
    SessionRequiredError,
    TooManyRequestsError,
)
from coordinator.metrics import UNKNOWN_API, CoordinatorCollector, CoordinatorMetrics, facts
from coordinator.paths import validate_path
from coordinator.protocol import API_VERSIONS, SERVER_VERSION, Api, WatchMode
from coordinator.sessions import SessionLimits, SessionTracker
from coordinator.snapshot import SnapshotStore
from coordinator.state_machine import (
    Applied,
    CheckOp,
    CreateOp,
    DeleteOp,
    MultiFailure,
    Op,
    SetOp,
    StateMachine,
    Txn,
)
from coordinator.txnlog import TxnLog, TxnLogError
from coordinator.watches import REMOVE_KINDS, NodeZxids, WatchManager

logger = logging.getLogger(__name__)

# Stop reading from a client whose unsent responses exceed this, until they drain.
SEND_HIGH_WATER = 4 * 1024 * 1024
# How long a closing connection may take to flush its last messages.
CLOSE_FLUSH_SECONDS = 2.0
PASSWORD_BYTES = 16
MAX_TIMEOUT_FIELD = (1 << 31) - 1
MAX_ZXID_FIELD = (1 << 63) - 1

_CONNECT = int(Api.CONNECT)
_SERVER_STAT = int(Api.SERVER_STAT)
_NO_SESSION_APIS = frozenset((_CONNECT, _SERVER_STAT))


class Connection:
    """One client connection: its session, its ordered outgoing queue."""

    __slots__ = (
        "close_requested",
        "closing",
        "framed",
        "peer",
        "pending",
        "read_scope",
        "session_id",
    )

    def __init__(self, framed: FramedConnection, peer: str) -> None:
        self.framed = framed
        self.peer = peer
        self.session_id = 0
        # (zxid tag, frame, receive time or -1.0 for pushes, api), released in order.
        self.pending: deque[tuple[int, bytes, float, int]] = deque()
        self.read_scope = trio.CancelScope()
        # closing: handle no more requests; close_requested: close once pending is flushed.
        self.closing = False
        self.close_requested = False

    def __repr__(self) -> str:
        return f"<Connection {self.peer} session={self.session_id:#x}>"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class CoordinatorServer:
    """Owns the state machine, the log, the connections and the background tasks."""

    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        self.machine = StateMachine(max_data_bytes=config.max_data_bytes)
        self.limits = SessionLimits(config.min_session_timeout_ms, config.max_session_timeout_ms)
        self.tracker = SessionTracker(config.tick_ms)
        self.watches: WatchManager[Connection] = WatchManager()
        self.log: TxnLog | None = None
        self.snapshots = SnapshotStore(config.snapshot_dir, keep=config.snapshot_keep)
        self.durable_zxid = 0
        self.outstanding = 0
        self.metrics = CoordinatorMetrics()
        self.port = 0
        self.connections: set[Connection] = set()
        self.session_conn: dict[int, Connection] = {}
        self._waiting: set[Connection] = set()
        self._commit_lot = trio.lowlevel.ParkingLot()
        self._durable_lot = trio.lowlevel.ParkingLot()
        self._snapshot_zxid = 0
        self._txns_since_snapshot = 0
        self._snapshotting = False
        self._thread_syncing = False
        self._log_failure: OSError | TxnLogError | None = None
        self._nursery: trio.Nursery | None = None
        self.started = time.monotonic()
        self._handlers: dict[int, Callable[[Connection, Payload], dict[str, Any]]] = {
            int(Api.CONNECT): self._connect,
            int(Api.CLOSE_SESSION): self._close_session,
            int(Api.PING): self._ping,
            int(Api.CREATE): self._create,
            int(Api.DELETE): self._delete,
            int(Api.EXISTS): self._exists,
            int(Api.GET_DATA): self._get_data,
            int(Api.SET_DATA): self._set_data,
            int(Api.GET_CHILDREN): self._get_children,
            int(Api.MULTI): self._multi,
            int(Api.SYNC): self._sync,
            int(Api.ADD_WATCH): self._add_watch,
            int(Api.REMOVE_WATCHES): self._remove_watches,
            int(Api.SET_WATCHES): self._set_watches,
            int(Api.SERVER_STAT): self._server_stat,
        }

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Recover: newest valid snapshot, then the log after it. Blocking."""
        latest = self.snapshots.latest()
        if latest is not None:
            zxid, payload = latest
            image = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            self.machine = StateMachine.restore(image, max_data_bytes=self.config.max_data_bytes)
            if self.machine.last_zxid != zxid:
                raise ValueError(
                    f"snapshot file zxid {zxid:#x} != its content's {self.machine.last_zxid:#x}"
                )
            self._snapshot_zxid = zxid
        log = TxnLog.open(
            self.config.log_dir, file_bytes=self.config.log_file_bytes, fsync=self.config.fsync
        )
        try:
            replayed = 0
            for zxid, record in log.read_from(self.machine.last_zxid):
                txn = Txn.from_wire(msgpack.unpackb(record, raw=False, strict_map_key=False))
                if txn.zxid != zxid:
                    raise ValueError(f"log record {zxid:#x} holds txn {txn.zxid:#x}")
                self.machine.apply(txn)
                replayed += 1
        except BaseException:
            log.close()
            raise
        self.log = log
        self._txns_since_snapshot = replayed
        self.durable_zxid = max(log.durable_zxid, self.machine.last_zxid)
        now = self._mono_ms()
        for session_id, session in self.machine.sessions.items():
            # ZooKeeper gives recovered sessions a full timeout from the restart.
            self.tracker.add(session_id, session.timeout_ms, now)
        logger.info(
            "recovered to zxid %#x (snapshot %#x + %d txns): %d nodes, %d sessions",
            self.machine.last_zxid,
            self._snapshot_zxid,
            replayed,
            len(self.machine.tree),
            len(self.machine.sessions),
        )

    def close(self) -> None:
        """Clean shutdown: final snapshot and close the log. Blocking."""
        log = self.log
        if log is None:
            return
        self.log = None
        try:
            log.sync()
            if self.machine.last_zxid > self._snapshot_zxid:
                self._write_snapshot_now(log)
        except (OSError, TxnLogError):
            logger.exception("final snapshot failed; the log still has every txn")
        finally:
            log.close()

    def _write_snapshot_now(self, log: TxnLog) -> None:
        zxid = self.machine.last_zxid
        self.snapshots.write(zxid, self._snapshot_bytes())
        self._snapshot_zxid = zxid
        oldest = self.snapshots.purge()
        if oldest is not None:
            log.purge_before(oldest)

    def _snapshot_bytes(self) -> bytes:
        data: bytes = msgpack.packb(self.machine.snapshot(), use_bin_type=True)
        return data

    async def run(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(port)`` once listening."""
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        if self.config.port == 0 and len(listeners) > 1:
            # Port 0 gives each address family a different port; keep one.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.port = port
            nursery.start_soon(self._committer)
            nursery.start_soon(self._ticker)
            await nursery.start(trio.serve_listeners, self._handle_stream, listeners)
            logger.info("coordinator serving on %s:%d", self.config.host, port)
            task_status.started(port)

    @staticmethod
    def _mono_ms() -> int:
        return time.monotonic_ns() // 1_000_000

    @property
    def serving(self) -> bool:
        """The log is open and the server listens."""
        return self.log is not None and self.port != 0 and self._log_failure is None

    def health(self) -> CheckResult:
        """The ``/health`` check (see coordinator.metrics for the names of the figures)."""
        return CheckResult(
            self.serving,
            {
                "port": self.port,
                "last_zxid": self.machine.last_zxid,
                "znode_count": len(self.machine.tree),
                "global_sessions": len(self.machine.sessions),
            },
        )

    # ------------------------------------------------------------ durability

    async def _committer(self) -> None:
        """Group commit: one fsync at a time covers every append made before it started."""
        log = self.log
        if log is None:
            raise RuntimeError("server not opened")
        while True:
            if self._log_failure is not None:
                # The log cannot promise durability any more: stop the whole server.
                raise self._log_failure
            if log.last_zxid <= self.durable_zxid:
                await self._commit_lot.park()
                continue
            if self._sync_inline():
                await trio.lowlevel.checkpoint()
                continue
            self._thread_syncing = True
            started = time.perf_counter()
            try:
                durable = await trio.to_thread.run_sync(log.sync)
            finally:
                self._thread_syncing = False
            self.metrics.fsync.observe(time.perf_counter() - started)
            self._made_durable(durable)

    def _sync_inline(self) -> bool:
        """fsync right here if the group is small (see the module docstring); True if done."""
        log = self.log
        if log is None or self._thread_syncing:
            return False
        waiting = log.last_zxid - self.durable_zxid
        if waiting <= 0:
            return True
        if self.config.fsync and waiting > self.config.inline_fsync_max_txns:
            return False
        started = time.perf_counter()
        try:
            durable = log.sync()
        except (OSError, TxnLogError) as exc:
            self._log_failure = exc
            self._commit_lot.unpark()
            return True
        self.metrics.fsync.observe(time.perf_counter() - started)
        self._made_durable(durable)
        return True

    def _made_durable(self, durable: int) -> None:
        if durable > self.durable_zxid:
            self.durable_zxid = durable
            self._release()
            self._durable_lot.unpark_all()

    def _release(self) -> None:
        durable = self.durable_zxid
        done: list[Connection] = []
        now = time.perf_counter()
        request_done = self.metrics.request_done
        for conn in self._waiting:
            pending = conn.pending
            send = conn.framed.send
            while pending and pending[0][0] <= durable:
                _, frame, received, api = pending.popleft()
                send(frame)
                if received >= 0.0:
                    self.outstanding -= 1
                    request_done(api, now - received)
            if not pending:
                done.append(conn)
        for conn in done:
            self._waiting.discard(conn)
            if conn.close_requested:
                conn.read_scope.cancel()

    def _enqueue(self, conn: Connection, tag: int, frame: bytes, received: float, api: int) -> None:
        if not conn.pending and tag <= self.durable_zxid:
            conn.framed.send(frame)
            if received >= 0.0:
                self.metrics.request_done(api, time.perf_counter() - received)
            return
        conn.pending.append((tag, frame, received, api))
        if received >= 0.0:
            self.outstanding += 1
        self._waiting.add(conn)

    def _respond(
        self,
        conn: Connection,
        xid: int,
        code: int,
        payload: Any,
        received: float,
        api: int = UNKNOWN_API,
    ) -> None:
        frame = encode_response(xid, code, payload)
        self._enqueue(conn, self.machine.last_zxid, frame, received, api)

    def _push(self, conn: Connection, event: dict[str, Any], tag: int) -> None:
        self._enqueue(conn, tag, encode_push(event), -1.0, UNKNOWN_API)

    def _request_close(self, conn: Connection) -> None:
        """Handle no more requests; close once everything queued has been sent."""
        conn.closing = True
        conn.close_requested = True
        if not conn.pending:
            conn.read_scope.cancel()

    def _commit(self, txn: Txn) -> Applied:
        """Log (buffered), apply and fan out one txn; durability follows in the committer."""
        log = self.log
        if log is None:
            raise RuntimeError("server not opened")
        log.append(txn.zxid, msgpack.packb(txn, use_bin_type=True))
        applied = self.machine.apply(txn)
        self._commit_lot.unpark()
        if applied.changes and not self.watches.empty:
            zxid = txn.zxid
            for event, path in applied.changes:
                for conn in self.watches.trigger(event, path):
                    self._push(conn, _watch_event(event, path, zxid), zxid)
        self._txns_since_snapshot += 1
        if self._txns_since_snapshot >= self.config.snapshot_every and not self._snapshotting:
            self._start_snapshot()
        return applied

    # ------------------------------------------------------------ snapshots

    def _start_snapshot(self) -> None:
        if self._nursery is None or self.log is None:
            return
        self._snapshotting = True
        self._txns_since_snapshot = 0
        zxid = self.machine.last_zxid
        # Serialised here, between requests, so the image is exactly the state at zxid.
        started = time.perf_counter()
        image = self._snapshot_bytes()
        serialize_seconds = time.perf_counter() - started
        self.log.roll()
        self._nursery.start_soon(self._finish_snapshot, zxid, image, serialize_seconds)

    async def _finish_snapshot(self, zxid: int, image: bytes, serialize_seconds: float) -> None:
        try:
            # A snapshot must never hold a txn the log could still lose.
            while self.durable_zxid < zxid:
                await self._durable_lot.park()
            started = time.perf_counter()
            await trio.to_thread.run_sync(self.snapshots.write, zxid, image)
            self.metrics.snapshot.observe(serialize_seconds + time.perf_counter() - started)
            self.metrics.snapshot_bytes = len(image)
            self._snapshot_zxid = max(self._snapshot_zxid, zxid)
            oldest = await trio.to_thread.run_sync(self.snapshots.purge)
            log = self.log
            if oldest is not None and log is not None:
                await trio.to_thread.run_sync(log.purge_before, oldest)
            logger.info("snapshot at zxid %#x written (%d bytes)", zxid, len(image))
        except (OSError, TxnLogError):
            logger.exception("snapshot at zxid %#x failed; the log still has everything", zxid)
        finally:
            self._snapshotting = False

    # ------------------------------------------------------------ ticks

    async def _ticker(self) -> None:
        interval = self.config.tick_ms / 1000.0
        while True:
            await trio.sleep(interval)
            try:
                self.tick()
            except Exception:
                logger.exception("coordinator tick failed")

    def tick(self) -> None:
        """Expire sessions past their deadline, then reap emptied containers and TTL nodes."""
        now = self._mono_ms()
        for session_id in self.tracker.expire(now):
            if session_id not in self.machine.sessions:
                continue
            logger.info("session %#x expired", session_id)
            self._commit(self.machine.prepare_close_session(session_id, _wall_ms()))
            conn = self.session_conn.pop(session_id, None)
            if conn is not None:
                conn.session_id = 0
                self._push(conn, {"type": "session", "state": "expired"}, self.machine.last_zxid)
                self._request_close(conn)
        txn = self.machine.prepare_reap(_wall_ms())
        if txn is not None:
            self._commit(txn)

    # ------------------------------------------------------------ connections

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        try:
            peer = "{}:{}".format(*stream.socket.getpeername()[:2])
        except OSError:
            peer = "?"
        framed = FramedConnection(stream, self.config.max_frame_bytes, resync=True)
        conn = Connection(framed, peer)
        self.connections.add(conn)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, conn)
                with conn.read_scope:
                    await self._read_loop(conn)
                conn.closing = True
                if conn.close_requested:
                    with trio.move_on_after(CLOSE_FLUSH_SECONDS):
                        while conn.pending and not framed.closed:
                            await self._durable_lot.park()
                        await framed.wait_drained()
                nursery.cancel_scope.cancel()
        except Exception:
            # Never let one connection's failure reach the listener's nursery.
            logger.exception("connection %s failed", peer)
        finally:
            self._drop(conn)
            with trio.CancelScope(shield=True):
                await framed.aclose()

    async def _write_loop(self, conn: Connection) -> None:
        try:
            await conn.framed.writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            logger.debug("connection %s: write failed: %r", conn.peer, exc)
        finally:
            conn.read_scope.cancel()

    def _drop(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.watches.remove_watcher(conn)
        if conn.pending:
            self.outstanding -= sum(1 for item in conn.pending if item[2] >= 0.0)
            conn.pending.clear()
        self._waiting.discard(conn)
        if conn.session_id and self.session_conn.get(conn.session_id) is conn:
            # The session lives on until its timeout; the client may reconnect.
            del self.session_conn[conn.session_id]

    async def _read_loop(self, conn: Connection) -> None:
        framed = conn.framed
        while True:
            try:
                messages = await framed.receive()
            except FrameTooLargeError as exc:
                self._respond(conn, 0, FrameTooLargeServerError.code, str(exc), -1.0)
                self._request_close(conn)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            if not messages:
                return
            received = time.perf_counter()
            now = self._mono_ms()
            for message in messages:
                if conn.closing:
                    break
                self.handle_message(conn, message, received, now)
            # A small group commit is cheapest done now, before this task sleeps again.
            self._sync_inline()
            framed.flush_nowait()
            if framed.queued_bytes > SEND_HIGH_WATER:
                await framed.wait_drained()

    # ------------------------------------------------------------ dispatch

    def handle_message(self, conn: Connection, message: Any, received: float, now: int) -> None:
        """Answer one decoded message (synchronously; the answer may wait for durability)."""
        if isinstance(message, UndecodableFrame):
            self._respond(conn, 0, InvalidRequestError.code, message.reason, received)
            return
        try:
            request = parse_request(message)
        except InvalidMessage as exc:
            self._respond(conn, exc.xid or 0, InvalidRequestError.code, str(exc), received)
            return
        xid = request.xid
        api = request.api
        handler = self._handlers.get(api)
        try:
            if handler is None:
                raise UnsupportedApiError(f"unknown api {api}")
            if request.version < 0 or request.version > API_VERSIONS[api]:
                raise UnsupportedVersionError(
                    f"api {Api(api).name} speaks versions 0..{API_VERSIONS[api]}, "
                    f"not {request.version}"
                )
            if conn.session_id:
                self.tracker.touch(conn.session_id, now)
            elif api not in _NO_SESSION_APIS:
                raise SessionRequiredError(f"{Api(api).name} needs a session: send CONNECT first")
            if self.outstanding >= self.config.max_outstanding_requests:
                raise TooManyRequestsError(
                    f"{self.outstanding} requests outstanding (limit "
                    f"{self.config.max_outstanding_requests})"
                )
            result = handler(conn, Payload(request.payload))
        except ServerError as exc:
            self._respond(conn, xid, exc.code, exc.message, received, api)
            return
        except Exception:
            logger.exception("handler for api %s failed (xid %d, %r)", api, xid, conn)
            error = InternalServerError("internal error; see the server log")
            self._respond(conn, xid, error.code, error.message, received, api)
            return
        result["zxid"] = self.machine.last_zxid
        self._respond(conn, xid, 0, result, received, api)
        if conn.close_requested and not conn.closing:
            # CLOSE_SESSION: the response first, then the push, then the close.
            self._push(conn, {"type": "session", "state": "closed"}, self.machine.last_zxid)
            self._request_close(conn)

    # ------------------------------------------------------------ handlers

    def _connect(self, conn: Connection, p: Payload) -> dict[str, Any]:
        if conn.session_id:
            raise BadArgumentsError("this connection already has a session")
        session_id = p.integer("session_id", 0, lo=0, hi=MAX_ZXID_FIELD)
        password = p.blob("password", b"")
        proposed = p.integer("timeout_ms", lo=0, hi=MAX_TIMEOUT_FIELD)
        last_zxid = p.integer("last_zxid", 0, lo=0, hi=MAX_ZXID_FIELD)
        machine = self.machine
        if last_zxid > machine.last_zxid:
            raise BadArgumentsError(
                f"client has seen zxid {last_zxid:#x}, newer than this server's "
                f"{machine.last_zxid:#x}"
            )
        now = self._mono_ms()
        if session_id == 0:
            timeout = self.limits.clamp(proposed)
            password = secrets.token_bytes(PASSWORD_BYTES)
            applied = self._commit(machine.prepare_create_session(timeout, password, _wall_ms()))
            session_id = applied.results[0]["session_id"]
            self.tracker.add(session_id, timeout, now)
        else:
            known = machine.sessions.get(session_id)
            if known is None or session_id not in self.tracker:
                raise SessionExpiredError(f"session {session_id:#x} has expired")
            if not hmac.compare_digest(known.password, password):
                raise AuthFailedError(f"wrong password for session {session_id:#x}")
            timeout = known.timeout_ms
            self.tracker.touch(session_id, now)
            old = self.session_conn.get(session_id)
            if old is not None and old is not conn:
                # A session lives on one connection at a time; the newest wins.
                old.session_id = 0
                self._request_close(old)
        conn.session_id = session_id
        self.session_conn[session_id] = conn
        return {
            "session_id": session_id,
            "password": password,
            "timeout_ms": timeout,
            "last_zxid": machine.last_zxid,
        }

    def _close_session(self, conn: Connection, p: Payload) -> dict[str, Any]:
        session_id = conn.session_id
        self._commit(self.machine.prepare_close_session(session_id, _wall_ms()))
        self.tracker.remove(session_id)
        self.session_conn.pop(session_id, None)
        conn.session_id = 0
        # The response goes out first, then the connection closes (see handle_message).
        conn.close_requested = True
        return {}

    def _ping(self, conn: Connection, p: Payload) -> dict[str, Any]:
        return {}

    def _create(self, conn: Connection, p: Payload) -> dict[str, Any]:
        txn = self.machine.prepare(conn.session_id, _create_op(p), _wall_ms())
        return self._commit(txn).results[0]

    def _delete(self, conn: Connection, p: Payload) -> dict[str, Any]:
        op = DeleteOp(p.text("path"), p.integer("version", -1))
        self._commit(self.machine.prepare(conn.session_id, op, _wall_ms()))
        return {}

    def _set_data(self, conn: Connection, p: Payload) -> dict[str, Any]:
        op = SetOp(p.text("path"), p.blob("data"), p.integer("version", -1))
        return self._commit(self.machine.prepare(conn.session_id, op, _wall_ms())).results[0]

    def _exists(self, conn: Connection, p: Payload) -> dict[str, Any]:
        path = validate_path(p.text("path"))
        watch = p.boolean("watch", False)
        node = self.machine.tree.nodes.get(path)
        if watch:
            self.watches.add_data(path, conn)
        return {"stat": None if node is None else node.stat_wire()}

    def _get_data(self, conn: Connection, p: Payload) -> dict[str, Any]:
        path = p.text("path")
        watch = p.boolean("watch", False)
        node = self.machine.node(path)
        if watch:
            self.watches.add_data(path, conn)
        return {"data": node.data, "stat": node.stat_wire()}

    def _get_children(self, conn: Connection, p: Payload) -> dict[str, Any]:
        path = p.text("path")
        watch = p.boolean("watch", False)
        node = self.machine.node(path)
        if watch:
            self.watches.add_child(path, conn)
        return {"children": sorted(node.children), "stat": node.stat_wire()}

    def _multi(self, conn: Connection, p: Payload) -> dict[str, Any]:
        raw_ops = p.array("ops")
        if not raw_ops:
            return {"results": []}
        ops: list[Op] = []
        for index, raw in enumerate(raw_ops):
            try:
                ops.append(_multi_op(raw))
            except ServerError as exc:
                return {"results": MultiFailure(index, exc).results(len(raw_ops))}
        try:
            txn = self.machine.prepare_multi(conn.session_id, ops, _wall_ms())
        except MultiFailure as failure:
            return {"results": failure.results(len(ops))}
        applied = self._commit(txn)
        return {"results": [[0, result] for result in applied.results]}

    def _sync(self, conn: Connection, p: Payload) -> dict[str, Any]:
        return {"path": validate_path(p.text("path"))}

    def _add_watch(self, conn: Connection, p: Payload) -> dict[str, Any]:
        path = validate_path(p.text("path"))
        mode = p.text("mode")
        if mode not in (WatchMode.PERSISTENT, WatchMode.PERSISTENT_RECURSIVE):
            raise BadArgumentsError(f"unknown watch mode {mode!r}")
        self.watches.add_persistent(path, conn, mode)
        return {}

    def _remove_watches(self, conn: Connection, p: Payload) -> dict[str, Any]:
        path = validate_path(p.text("path"))
        kind = p.text("kind", "any")
        if kind not in REMOVE_KINDS:
            raise BadArgumentsError(f"unknown watch kind {kind!r}; one of {REMOVE_KINDS}")
        self.watches.remove(path, conn, kind)
        return {}

    def _set_watches(self, conn: Connection, p: Payload) -> dict[str, Any]:
        last_zxid = p.integer("last_zxid", lo=0, hi=MAX_ZXID_FIELD)
        lists = {
            key: [validate_path(path) for path in p.texts(key, [])]
            for key in ("data", "exist", "child", "persistent", "persistent_recursive")
        }
        nodes = self.machine.tree.nodes

        def lookup(path: str) -> NodeZxids | None:
            node = nodes.get(path)
            return None if node is None else NodeZxids(node.czxid, node.mzxid, node.pzxid)

        fired = self.watches.set_watches(conn, last_zxid, lookup, **lists)
        zxid = self.machine.last_zxid
        for event, path in fired:
            self._push(conn, _watch_event(event, path, zxid), zxid)
        return {}

    def _server_stat(self, conn: Connection, p: Payload) -> dict[str, Any]:
        # The same figures as the metrics (coordinator.metrics), under stat's names.
        now = facts(self)
        lo, avg, hi = self.metrics.latency_ms()
        return {
            "version": SERVER_VERSION,
            "last_zxid": now["last_zxid"],
            "node_count": now["znode_count"],
            "ephemeral_count": now["ephemerals_count"],
            "session_count": now["global_sessions"],
            "connection_count": now["num_alive_connections"],
            "watch_count": now["watch_count"],
            "outstanding_requests": now["outstanding_requests"],
            "latency_min_ms": lo,
            "latency_avg_ms": avg,
            "latency_max_ms": hi,
            "uptime_s": now["uptime_seconds"],
            "data_dir": str(self.config.data_dir),
        }


# ---------------------------------------------------------------- payload parsing


def _watch_event(event: str, path: str, zxid: int) -> dict[str, Any]:
    return {"type": "watch", "event": event, "path": path, "zxid": zxid}


def _create_op(p: Payload) -> CreateOp:
    return CreateOp(
        p.text("path"),
        p.blob("data", b""),
        p.integer("mode", 0),
        p.integer("ttl_ms", 0),
        p.boolean("make_parents", False),
    )


def _multi_op(raw: Any) -> Op:
    if not isinstance(raw, list | tuple) or len(raw) != 2 or not isinstance(raw[0], str):
        raise InvalidRequestError("a multi op is [name, args]")
    name, args = raw
    p = Payload(args)
    if name == "create":
        return _create_op(p)
    if name == "set":
        return SetOp(p.text("path"), p.blob("data"), p.integer("version", -1))
    if name == "delete":
        return DeleteOp(p.text("path"), p.integer("version", -1))
    if name == "check":
        return CheckOp(p.text("path"), p.integer("version", -1))
    raise InvalidRequestError(f"unknown multi op {name!r}; one of check, create, set, delete")


# ---------------------------------------------------------------- entry point


async def serve(
    config: CoordinatorConfig,
    *,
    observe: Observability | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a coordinator until cancelled; ``task_status.started(port)`` once it listens.

    Recovery runs first (in a worker thread); on cancellation the server writes a
    final snapshot and closes its log before returning. With ``observe``, the
    server's metrics go into its registry (once recovered) and its health check
    ``coordinator`` into its checks (at once: unavailable until it serves).
    """
    server = CoordinatorServer(config)
    if observe is not None:
        observe.health.add("coordinator", server.health)
    await trio.to_thread.run_sync(server.open)
    if observe is not None:
        observe.registry.register(CoordinatorCollector(server))
    try:
        await server.run(task_status)
    finally:
        server.close()
