"""MCP endpoints that fail on purpose, for the failure reasons the SDK never produces:
--mode init-error (JSON-RPC error on initialize), hang (never answers), garbage (a body that is
not JSON-RPC), bad-sse (SSE framing without a response). Everything else answers as a server
that speaks the protocol would."""
import argparse
import asyncio
import json

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from _serve import serve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True,
                        choices=["init-error", "hang", "garbage", "bad-sse"])
    mode = parser.parse_args().mode

    async def endpoint(request):
        if request.method != "POST":
            return Response(status_code=405)
        message = json.loads(await request.body())
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "garbage":
            return Response(b"<html>definitely not JSON-RPC", media_type="application/json")
        if mode == "bad-sse":
            return Response(b"event: message\ndata: {\"jsonrpc\": \"2.0\", \"id\": 99}\n\n",
                            media_type="text/event-stream")
        return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"),
                             "error": {"code": -32603, "message": "backend database unavailable"}})

    app = Starlette(routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"])])
    serve(app)


if __name__ == "__main__":
    main()
