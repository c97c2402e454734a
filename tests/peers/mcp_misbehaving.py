"""MCP endpoints that behave in ways the SDK never produces, one --mode each.

Failing on purpose: init-error (JSON-RPC error on initialize), hang (never answers), garbage
(a body that is not JSON-RPC), bad-sse (SSE framing without a response), future (every
request refused with 400 and -32022, as a server speaking only a version of 2099 would),
broken-modern (a server of both eras whose server/discover answers -32603 while its handshake
still works), unauthorized (every request answered 401 with a JSON-RPC error).

Speaking the protocol, with a twist (a small hand-written server: initialize, ping, tools/list
with the tool `echo`, DELETE):
  prime         every answer is SSE: a comment-only event, then a priming event whose `data`
                is empty, then the response
  sse-requests  every answer is SSE: a notification and a server request carrying the same id
                as the client's request come before the response
  no-ping       ping is answered with -32601 (method not found)
  close         every answer says `Connection: close` and the connection is closed after it
  sessions      counts sessions; a request header `X-Hang: <step>` makes that step hang:
                initialize-body (the head, with the session id, then nothing), ping, delete.
                stdin command `sessions` prints "open=N deleted=M"."""
import argparse
import asyncio
import itertools
import json

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from _serve import serve

FAILING = ["init-error", "hang", "garbage", "bad-sse", "future", "broken-modern", "unauthorized"]
SPEAKING = ["prime", "sse-requests", "no-ping", "close", "sessions"]


def failing(mode):
    async def endpoint(request):
        if request.method != "POST":
            return Response(status_code=405)
        message = json.loads(await request.body())
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "garbage":
            return Response(b"<html>definitely not JSON-RPC", media_type="application/json")
        if mode == "future":
            return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"), "error": {
                "code": -32022, "message": "Unsupported protocol version",
                "data": {"supported": ["2099-01-01"], "requested": "2026-07-28"}}},
                status_code=400)
        if mode == "unauthorized":
            return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"), "error": {
                "code": -32001, "message": "missing or invalid token"}}, status_code=401)
        if mode == "broken-modern" and message.get("method") != "server/discover":
            if "id" not in message:
                return Response(status_code=202)
            result = {}
            if message.get("method") == "initialize":
                result = {"protocolVersion": "2025-11-25", "capabilities": {},
                          "serverInfo": {"name": "broken-modern", "version": "1"}}
            return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"), "result": result})
        if mode == "bad-sse":
            return Response(b"event: message\ndata: {\"jsonrpc\": \"2.0\", \"id\": 99}\n\n",
                            media_type="text/event-stream")
        return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"),
                             "error": {"code": -32603, "message": "backend database unavailable"}})
    return endpoint, lambda line: f"unknown command {line!r}"


def speaking(mode):
    open_sessions = set()
    deleted = [0]
    ids = itertools.count(1)

    def answer(message, outcome, headers):
        response = {"jsonrpc": "2.0", "id": message["id"], **outcome}
        if mode == "prime":
            body = ": a comment-only event\n\nid: 1\ndata:\n\n"
        elif mode == "sse-requests":
            body = "".join(f"data: {json.dumps(m)}\n\n" for m in [
                {"jsonrpc": "2.0", "method": "notifications/message",
                 "params": {"level": "info", "data": "working on it"}},
                {"jsonrpc": "2.0", "id": message["id"], "method": "roots/list"},
            ])
        else:
            return JSONResponse(response, headers=headers)
        body += f"id: 2\nevent: message\ndata: {json.dumps(response)}\n\n"
        return Response(body, media_type="text/event-stream", headers=headers)

    async def endpoint(request):
        hang = request.headers.get("x-hang", "")
        headers = {"connection": "close"} if mode == "close" else {}
        session = request.headers.get("mcp-session-id")
        if request.method == "DELETE":
            if session in open_sessions:
                open_sessions.discard(session)
                deleted[0] += 1
            if hang == "delete":
                await asyncio.sleep(3600)
            return Response(status_code=200, headers=headers)
        if request.method != "POST":
            return Response(status_code=405, headers=headers)
        message = json.loads(await request.body())
        method = message.get("method")
        if method != "initialize" and mode == "sessions" and session not in open_sessions:
            return Response(status_code=404, headers=headers)
        if "id" not in message:
            return Response(status_code=202, headers=headers)
        if hang == method:
            await asyncio.sleep(3600)
        if method == "initialize":
            session = f"session-{next(ids)}"
            open_sessions.add(session)
            headers["mcp-session-id"] = session
            if hang == "initialize-body":
                async def nothing():
                    await asyncio.sleep(3600)
                    yield b""
                return StreamingResponse(nothing(), media_type="text/event-stream",
                                         headers=headers)
            return answer(message, {"result": {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "misbehaving", "version": "0.1"}}}, headers)
        if method == "ping" and mode != "no-ping":
            return answer(message, {"result": {}}, headers)
        if method == "tools/list":
            return answer(message, {"result": {"tools": [
                {"name": "echo", "inputSchema": {"type": "object"}}]}}, headers)
        return answer(message, {"error": {"code": -32601, "message": "Method not found"}},
                      headers)

    def command(line):
        if line == "sessions":
            return f"open={len(open_sessions)} deleted={deleted[0]}"
        return f"unknown command {line!r}"

    return endpoint, command


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True, choices=FAILING + SPEAKING)
    mode = parser.parse_args().mode
    endpoint, command = failing(mode) if mode in FAILING else speaking(mode)
    app = Starlette(routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"])])
    serve(app, command=command)


if __name__ == "__main__":
    main()
