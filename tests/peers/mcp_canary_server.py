"""Reference MCP server for the canary tests: the official SDK's FastMCP (1.x) over streamable
HTTP at /mcp, with tools a canary calls:

  echo      answers its `text` argument
  forecast  answers structured content ({"city": ..., "celsius": 21, "sky": "clear"})
  fail      raises, which the SDK answers as a result with isError: true
  sleep     waits `seconds` before answering "awake" (past the canary's timeout)

--stateless serves without sessions (each request alone), as the JSON answers of --json."""
import argparse
import asyncio

from mcp.server.fastmcp import FastMCP
from pydantic import BaseModel

from _serve import serve


class Forecast(BaseModel):
    city: str
    celsius: int
    sky: str


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    args = parser.parse_args()
    mcp = FastMCP("peer-canary-tools", json_response=args.json, stateless_http=args.stateless)

    @mcp.tool()
    def echo(text: str) -> str:
        """Answers its input."""
        return text

    @mcp.tool()
    def forecast(city: str) -> Forecast:
        """Tomorrow's weather, as structured content."""
        return Forecast(city=city, celsius=21, sky="clear")

    @mcp.tool()
    def fail(text: str = "") -> str:
        """Always fails: the search backend is down."""
        raise RuntimeError("search backend unavailable")

    @mcp.tool()
    async def sleep(seconds: float = 30.0) -> str:
        """Answers after `seconds`."""
        await asyncio.sleep(seconds)
        return "awake"

    serve(mcp.streamable_http_app())


if __name__ == "__main__":
    main()
