"""Runtime adapters: one connector per server type, plus the bundle runtime."""

from __future__ import annotations

from gateway.servers.runtimes.base import Connector
from gateway.servers.runtimes.docker import DockerConnector
from gateway.servers.runtimes.generated import GeneratedConnector
from gateway.servers.runtimes.remote import RemoteConnector
from gateway.servers.runtimes.stdio import NpxConnector, UvxConnector

CONNECTORS: dict[str, Connector] = {
    "npx": NpxConnector(),
    "uvx": UvxConnector(),
    "docker": DockerConnector(),
    "remote": RemoteConnector(),
    "generated": GeneratedConnector(),
}
