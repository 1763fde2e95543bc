"""Echo backends built with the SDKs agents' servers are really built with.

``python -m bench.sdk_backends {fastmcp|sdk} PORT [--stateless] [--json]`` serves one
tool, ``echo(text) -> text``, over Streamable HTTP at ``/mcp``: with FastMCP (the most
common Python server framework) or the official Python SDK's ``MCPServer``.
``--stateless`` drops sessions; ``--json`` answers with plain JSON instead of SSE.
The TypeScript SDK's counterpart is ``bench/ts/echo.mjs``.
"""

from __future__ import annotations

import argparse
import logging


def _fastmcp(port: int, stateless: bool, json_response: bool) -> None:
    from fastmcp import FastMCP

    server = FastMCP("echo")

    @server.tool
    def echo(text: str) -> str:
        return text

    server.run(
        transport="http",
        host="127.0.0.1",
        port=port,
        stateless_http=stateless,
        json_response=json_response,
        show_banner=False,
        log_level="warning",
    )


def _sdk(port: int, stateless: bool, json_response: bool) -> None:
    from mcp.server.mcpserver import MCPServer

    server: MCPServer[object] = MCPServer("echo")

    @server.tool()
    def echo(text: str) -> str:
        return text

    server.run(
        transport="streamable-http",
        host="127.0.0.1",
        port=port,
        stateless_http=stateless,
        json_response=json_response,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sdk", choices=["fastmcp", "sdk"])
    parser.add_argument("port", type=int)
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run = _fastmcp if args.sdk == "fastmcp" else _sdk
    run(args.port, args.stateless, args.json)


if __name__ == "__main__":
    main()
