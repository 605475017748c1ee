#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An independent MCP client for the FemtoClaw tests, on the official Python SDK.

Requires the `mcp` package, version 2.3.0 (PyPI). It reaches an MCP server
over one of two transports, performs the initialize handshake, lists every
tool (following pagination cursors), calls the tools named in the ``--calls``
file in order, and prints one JSON object on stdout:

    {"protocol_version": ..., "server": ...,
     "tools": [{"name", "description", "inputSchema", "outputSchema"}, ...],
     "calls": [{"name", "isError", "structuredContent", "content", "meta"}, ...]}

``content`` holds the text of the result's text blocks; ``meta`` is the
result's ``_meta`` object (or null).

A call with ``"meta": {...}`` sends that object as the request's ``_meta``
(a ``traceparent``, say).

A call with ``"timeout": SECONDS`` is abandoned after that long: the SDK then
sends ``notifications/cancelled`` for it, and its report is
``{"name", "cancelled": true}``.

``--await-list-changed``: after the calls, the client prints the line
``waiting`` on stdout, waits for the server's
``notifications/tools/list_changed``, lists the tools again and adds them to
the report as ``tools_after``. The SDK checks ``structuredContent``
against the tool's ``outputSchema`` on successful calls. A mismatch, a
JSON-RPC error, a line on the server's stdout that is not JSON-RPC, or a
broken connection is a failure: the error goes to stderr and the exit status
is 1. Everything stops after 60 seconds.

``--stdio`` launches COMMAND and speaks newline-delimited JSON-RPC on its
stdin and stdout. The server inherits this process's environment, and its
stderr goes to this process's stderr.

``--http`` connects to URL (such as http://127.0.0.1:8420/mcp) over streamable
HTTP, with the SDK's ``streamable_http_client``. ``--token T`` sends
``Authorization: Bearer T`` on every request, and each ``--header NAME:VALUE``
adds that header to every request (a later one with the same name replaces
an earlier one). An HTTP error status on any request is a failure (except 405
to the optional GET stream or the closing DELETE, which the protocol allows):
besides the error line, stderr gets ``http-status: <code>`` and, for a 401
with a challenge, ``www-authenticate: <value>``. The SDK itself turns such a
status into a generic JSON-RPC error and drops the status and the headers, so
this script reads them off each response with an httpx2 response hook.

Usage:
    mcp_client.py [--calls FILE] --stdio -- COMMAND [ARGS...]
    mcp_client.py [--calls FILE] --http URL [--token TOKEN] [--header NAME:VALUE]...
"""

import argparse
import json
import os
import sys
from contextlib import asynccontextmanager

import anyio
import httpx2
import mcp.types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

TIMEOUT_SECONDS = 60

USAGE = """\
mcp_client.py [--calls FILE] --stdio -- COMMAND [ARGS...]
       mcp_client.py [--calls FILE] --http URL [--token TOKEN] [--header NAME:VALUE]..."""


def parse_args(argv):
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage=USAGE)
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--stdio", action="store_true", help="launch the server command after -- over stdio")
    transport.add_argument("--http", metavar="URL", help="connect to the server over streamable HTTP at URL")
    parser.add_argument("--calls", metavar="FILE", help="JSON array of {name, arguments} tool calls")
    parser.add_argument(
        "--await-list-changed", action="store_true", help="after the calls, wait for tools/list_changed and list again"
    )
    parser.add_argument("--token", help="with --http: send 'Authorization: Bearer TOKEN' on every request")
    parser.add_argument(
        "--header", metavar="NAME:VALUE", action="append", default=[], help="with --http: add a header (repeatable)"
    )
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if args.stdio:
        if not args.command:
            parser.error("--stdio needs the server command after --")
        if args.token is not None or args.header:
            parser.error("--token and --header go with --http")
    else:
        if split < len(argv):
            parser.error("--http takes no server command")
        args.headers = {}
        for header in args.header:
            name, sep, value = header.partition(":")
            if not sep or not name.strip():
                parser.error(f"--header {header!r}: expected NAME:VALUE")
            args.headers[name.strip()] = value.strip()
        if args.token is not None:
            args.headers["Authorization"] = f"Bearer {args.token}"
    return args


def load_calls(path):
    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        calls = json.load(f)
    if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        raise ValueError(f"{path}: expected a JSON array of objects with a string 'name'")
    return calls


class HTTPStatusFault(Exception):
    """An HTTP error status from the server, with what a test asserts on."""

    def __init__(self, response):
        self.status = response.status_code
        self.www_authenticate = response.headers.get("www-authenticate")
        super().__init__(f"{response.request.method} {response.request.url} answered HTTP {self.status}")

    def report_lines(self):
        lines = [f"http-status: {self.status}"]
        if self.status == 401 and self.www_authenticate is not None:
            lines.append(f"www-authenticate: {self.www_authenticate}")
        return lines


def stdio_transport(command):
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    return stdio_client(params, errlog=sys.stderr)


@asynccontextmanager
async def http_transport(url, headers, on_fault):
    """The SDK's streamable HTTP client on an httpx2 client that sends `headers` and reports error statuses."""

    async def check_status(response):
        # The GET stream for server-initiated messages and the DELETE ending the session are
        # optional for a server, which declines them with 405.
        optional = response.status_code == 405 and response.request.method in ("GET", "DELETE")
        if response.status_code >= 400 and not optional:
            on_fault(HTTPStatusFault(response))

    async with httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(TIMEOUT_SECONDS), event_hooks={"response": [check_status]}
    ) as client:
        async with streamable_http_client(url, http_client=client) as streams:
            yield streams


async def list_tools(session):
    tools, cursor = [], None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor is not None else None)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools


def describe(tools):
    return [
        {"name": t.name, "description": t.description, "inputSchema": t.input_schema, "outputSchema": t.output_schema}
        for t in tools
    ]


async def talk(transport, calls, message_handler, list_changed):
    async with transport as (read, write):
        async with ClientSession(read, write, message_handler=message_handler) as session:
            await session.initialize()
            tools = await list_tools(session)

            results = []
            for call in calls:
                if "timeout" in call:
                    with anyio.move_on_after(call["timeout"]) as waited:
                        early = await session.call_tool(call["name"], call.get("arguments"))
                    if waited.cancelled_caught:
                        results.append({"name": call["name"], "cancelled": True})
                        continue
                    raise RuntimeError(f"{call['name']} answered within {call['timeout']} s: {early}")
                result = await session.call_tool(call["name"], call.get("arguments"), meta=call.get("meta"))
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
            report = {
                "protocol_version": session.protocol_version,
                "server": server.name if server is not None else None,
                "tools": describe(tools),
                "calls": results,
            }
            if list_changed is not None:
                print("waiting", flush=True)
                await list_changed.wait()
                report["tools_after"] = describe(await list_tools(session))
            return report


async def run(args, calls):
    """`talk`, bounded in time, failing at once on a transport fault (such as a non-JSON-RPC line
    on stdio, or an HTTP error status)."""
    faults = []
    with anyio.move_on_after(TIMEOUT_SECONDS) as scope:

        def on_fault(fault):
            faults.append(fault)
            scope.cancel()

        list_changed = anyio.Event() if args.await_list_changed else None

        async def on_message(message):
            if isinstance(message, Exception):
                on_fault(message)
            elif list_changed is not None and getattr(message, "method", None) == "notifications/tools/list_changed":
                list_changed.set()

        if args.stdio:
            transport = stdio_transport(args.command)
        else:
            transport = http_transport(args.http, args.headers, on_fault)
        try:
            report = await talk(transport, calls, on_message, list_changed)
        except Exception:
            if not faults:  # otherwise the fault is the cause, reported below
                raise
        else:
            if not faults:
                return report
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
        report = anyio.run(run, args, calls)
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        for err in leaf_errors(exc):
            print(f"mcp_client: error: {type(err).__name__}: {err}", file=sys.stderr)
            if isinstance(err, HTTPStatusFault):
                for line in err.report_lines():
                    print(line, file=sys.stderr)
        return 1
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
