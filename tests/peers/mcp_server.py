"""Reference MCP server for the probe tests: the official SDK's FastMCP over the streamable
HTTP transport at /mcp, with two tools. --json answers JSON instead of SSE-framed responses."""
import argparse

from mcp.server.fastmcp import FastMCP

from _serve import serve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    args = parser.parse_args()
    mcp = FastMCP("peer-tools", json_response=args.json, stateless_http=args.stateless)

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    @mcp.tool()
    def echo(text: str) -> str:
        """Answers its input."""
        return text

    serve(mcp.streamable_http_app())


if __name__ == "__main__":
    main()
