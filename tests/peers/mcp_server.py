"""Reference MCP server for the probe tests: the official SDK's FastMCP over the streamable
HTTP transport at /mcp, with two tools. --json answers JSON instead of SSE-framed responses;
--event-store keeps events for resumption, so every SSE answer opens with the 2025-11-25
priming event (an event id and empty data)."""
import argparse
import itertools

from mcp.server.fastmcp import FastMCP
from mcp.server.streamable_http import EventStore

from _serve import serve


class MemoryEventStore(EventStore):
    """Keeps every event; enough for a test peer that never replays."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.events = []

    async def store_event(self, stream_id, message):
        event_id = str(next(self.ids))
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--event-store", action="store_true")
    args = parser.parse_args()
    store = MemoryEventStore() if args.event_store else None
    mcp = FastMCP("peer-tools", json_response=args.json, stateless_http=args.stateless,
                  event_store=store)

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
