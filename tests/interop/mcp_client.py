#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An independent MCP client for the FemtoClaw tests, on the official Python SDK.

Requires the `mcp` package, version 2.3.0 (PyPI). It launches an MCP server
over stdio (newline-delimited JSON-RPC), performs the initialize handshake,
lists every tool (following pagination cursors), calls the tools named in the
``--calls`` file in order, and prints one JSON object on stdout:

    {"protocol_version": ..., "server": ...,
     "tools": [{"name", "description", "inputSchema", "outputSchema"}, ...],
     "calls": [{"name", "isError", "structuredContent", "content", "meta"}, ...]}

``content`` holds the text of the result's text blocks; ``meta`` is the
result's ``_meta`` object (or null). The SDK checks ``structuredContent``
against the tool's ``outputSchema`` on successful calls. A mismatch, a
JSON-RPC error, a line on the server's stdout that is not JSON-RPC, or a
broken connection is a failure: the error goes to stderr and the exit status
is 1. Everything stops after 60 seconds. The server inherits this process's
environment, and its stderr goes to this process's stderr.

Usage:
    mcp_client.py [--calls FILE] --stdio -- COMMAND [ARGS...]
"""

import argparse
import json
import os
import sys

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters, stdio_client

TIMEOUT_SECONDS = 60


def parse_args(argv):
    if "--" not in argv:
        sys.exit("usage: mcp_client.py [--calls FILE] --stdio -- COMMAND [ARGS...]")
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdio", action="store_true", required=True, help="run the server over stdio")
    parser.add_argument("--calls", metavar="FILE", help="JSON array of {name, arguments} tool calls")
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if not args.command:
        parser.error("no server command after --")
    return args


def load_calls(path):
    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        calls = json.load(f)
    if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        raise ValueError(f"{path}: expected a JSON array of objects with a string 'name'")
    return calls


async def talk(command, calls, message_handler):
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    async with stdio_client(params, errlog=sys.stderr) as (read, write):
        async with ClientSession(read, write, message_handler=message_handler) as session:
            await session.initialize()

            tools, cursor = [], None
            while True:
                page = await session.list_tools(
                    params=types.PaginatedRequestParams(cursor=cursor) if cursor is not None else None
                )
                tools.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break

            results = []
            for call in calls:
                result = await session.call_tool(call["name"], call.get("arguments"))
                results.append(
                    {
                        "name": call["name"],
                        "isError": result.is_error,
                        "structuredContent": result.structured_content,
                        "content": [b.text for b in result.content if isinstance(b, types.TextContent)],
                        "meta": result.meta,
                    }
                )

            server = session.server_info
            return {
                "protocol_version": session.protocol_version,
                "server": server.name if server is not None else None,
                "tools": [
                    {
                        "name": t.name,
                        "description": t.description,
                        "inputSchema": t.input_schema,
                        "outputSchema": t.output_schema,
                    }
                    for t in tools
                ],
                "calls": results,
            }


async def run(command, calls):
    """`talk`, bounded in time, failing at once on a transport fault (such as a non-JSON-RPC line)."""
    faults = []
    with anyio.move_on_after(TIMEOUT_SECONDS) as scope:

        async def on_message(message):
            if isinstance(message, Exception):
                faults.append(message)
                scope.cancel()

        return await talk(command, calls, on_message)
    if faults:
        raise faults[0]
    raise TimeoutError(f"no complete result within {TIMEOUT_SECONDS} s")


def leaf_errors(exc):
    """Flatten exception groups (raised by the SDK's task groups) into their leaves."""
    subs = getattr(exc, "exceptions", None)  # BaseExceptionGroup, without needing Python 3.11
    if isinstance(subs, tuple):
        return [leaf for sub in subs for leaf in leaf_errors(sub)]
    return [exc]


def main():
    args = parse_args(sys.argv[1:])
    try:
        calls = load_calls(args.calls)
        report = anyio.run(run, args.command, calls)
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        for err in leaf_errors(exc):
            print(f"mcp_client: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
