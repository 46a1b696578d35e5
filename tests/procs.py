"""Server processes for tests (the implementation is shared with the benchmarks)."""

from bench.processes import BROKER_READY, READY, ServerProcess, broker_argv, coordinator_argv

__all__ = ["BROKER_READY", "READY", "ServerProcess", "broker_argv", "coordinator_argv"]
