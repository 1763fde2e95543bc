"""MCP Gateway: platform core and pillar 1 (MCP servers as tools)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mcp-gateway")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
