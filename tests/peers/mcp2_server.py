"""Reference MCP server of the 2026-07-28 era for the probe tests: the official SDK 2.x
(`MCPServer`) over streamable HTTP at /mcp, with the tools `add` and `echo`. The SDK serves both
eras on one endpoint (requests whose MCP-Protocol-Version is a handshake version, or absent, go
to its legacy transport; others to its 2026-07-28 one). --era picks what the endpoint admits:

  dual     the SDK as it is (stateful legacy sessions beside stateless 2026-07-28 requests)
  modern   --stateless, and a request that is not of the 2026-07-28 era is refused as a
           modern-only server must: 400 with JSON-RPC error -32022 naming the versions it speaks
  legacy   a request of the 2026-07-28 era is refused as a pre-2026 server does: 400 with a
           JSON-RPC -32600 error naming the handshake versions

--json answers JSON instead of SSE; --port listens there instead of on a free port. The stdin command `counts` prints "modern=N legacy=M": the
POSTs with and without an Mcp-Method header (the DELETEs of legacy sessions are not counted)."""
import argparse
import json

from mcp.server.mcpserver import MCPServer
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from _serve import serve


def gate(app, era, counts):
    async def refuse(send, status, error):
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def gated(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        version = headers.get("mcp-protocol-version")
        modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
        counts["modern" if "mcp-method" in headers else "legacy"] += 1
        if era == "modern" and not modern:
            return await refuse(send, 400, {
                "code": -32022, "message": "Unsupported protocol version",
                "data": {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": version}})
        if era == "legacy" and modern:
            return await refuse(send, 400, {
                "code": -32600,
                "message": f"Bad Request: Unsupported protocol version: {version}. "
                           f"Supported versions: {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)}"})
        return await app(scope, receive, send)
    return gated


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--era", choices=["dual", "modern", "legacy"], default="dual")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    mcp = MCPServer("peer-tools-2", version="2.0.0")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    @mcp.tool()
    def echo(text: str) -> str:
        """Answers its input."""
        return text

    app = mcp.streamable_http_app(json_response=args.json, stateless_http=args.era == "modern")
    counts = {"modern": 0, "legacy": 0}

    def command(line):
        if line == "counts":
            return f"modern={counts['modern']} legacy={counts['legacy']}"
        return f"unknown command {line!r}"

    serve(gate(app, args.era, counts), port=args.port, command=command)


if __name__ == "__main__":
    main()
