"""Runs the official MCP conformance suite (`@modelcontextprotocol/conformance`) against a
running `femtoclaw-host serve`.

The suite's client sends no credentials, and FemtoClaw's `/mcp` refuses every request without a
bearer token, so this script puts a loopback proxy in front of the server that adds
`Authorization: Bearer TOKEN` to each request and passes everything else through unchanged —
`Host`, `Origin` and the MCP headers included, so the suite's DNS-rebinding scenario still
reaches the server's own checks — streaming server-sent events as they come.

    python mcp_conformance.py --node NODE --suite PATH/TO/conformance/dist/index.js \
        --url http://127.0.0.1:PORT/mcp --token TOKEN --baseline BASELINE.yml \
        [--listen PROXY_PORT] [--output-dir DIR]

The proxy listens on 127.0.0.1:PROXY_PORT (any free port by default): the server must allow
the origin `http://127.0.0.1:PROXY_PORT`, which the suite sends as a valid one.

It exits with the suite's own status: 0 when every scenario passes except those the baseline
lists (each with the reason in the README), non-zero otherwise.
"""

import argparse
import http.client
import http.server
import subprocess
import sys
import threading
import urllib.parse

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def proxy_handler(upstream, token):
    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in HOP_BY_HOP and name.lower() != "authorization"
            }
            headers["Authorization"] = f"Bearer {token}"
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            # `skip_host`: the client's own Host header goes through as it was sent.
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while True:
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the suite closed a stream it was done with
            finally:
                connection.close()

        do_GET = do_POST = do_DELETE = forward

        def log_message(self, *args):
            pass

    return Proxy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", required=True)
    parser.add_argument("--suite", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--listen", type=int, default=0)
    parser.add_argument("--output-dir")
    args = parser.parse_args()

    upstream = urllib.parse.urlsplit(args.url)
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen), proxy_handler(upstream, args.token))
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}{upstream.path}"

    command = [args.node, args.suite, "server", "--url", url, "--expected-failures", args.baseline]
    if args.output_dir:
        command += ["--output-dir", args.output_dir]
    status = subprocess.run(command, timeout=600).returncode
    proxy.shutdown()
    sys.exit(status)


if __name__ == "__main__":
    main()
