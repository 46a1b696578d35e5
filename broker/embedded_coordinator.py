"""The coordinator ``broker serve`` runs in its own process when no address is configured.

It listens on its own port (``embedded_coordinator_port``, 2181 by default) at
the broker's host, keeps its data in ``<data_dir>/coordinator`` and is an
ordinary coordinator: other brokers may join the cluster through it. It is
stopped last, after the broker has closed its own session (broker.server).
Its metrics and health are served on the broker's metrics endpoint, and it logs
as the broker does.
"""

from __future__ import annotations

from typing import Any

from broker.config import BrokerConfig, ConfigError
from coordinator.config import ConfigError as CoordinatorConfigError
from coordinator.config import CoordinatorConfig

_WILDCARDS = ("", "0.0.0.0", "::")
# Keys the process decides for both services, never the embedded coordinator alone.
_PROCESS_WIDE = {
    "metrics_port": "its metrics are served on the broker's metrics_port",
    "log_json": "the broker's log_json sets the format of the whole process's log",
}


def embedded_config(config: BrokerConfig, overrides: dict[str, Any]) -> CoordinatorConfig:
    """The embedded coordinator's config: host, port and data dir from the broker's,
    anything else from the ``[embedded_coordinator]`` table."""
    for key, why in _PROCESS_WIDE.items():
        if key in overrides:
            raise ConfigError(f"embedded_coordinator: {key} cannot be set there: {why}")
    values = dict(overrides)
    values.setdefault("host", config.host)
    values.setdefault("port", config.embedded_coordinator_port)
    values.setdefault("data_dir", str(config.embedded_coordinator_dir))
    values.setdefault("log_level", config.log_level)
    try:
        return CoordinatorConfig.from_mapping(values, source="embedded_coordinator")
    except CoordinatorConfigError as exc:
        raise ConfigError(str(exc)) from None


def connect_address(cconfig: CoordinatorConfig, port: int) -> str:
    host = "127.0.0.1" if cconfig.host in _WILDCARDS else cconfig.host
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"
