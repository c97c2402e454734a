"""What an implementation says of itself, asked with that protocol's own client, for the
protocol matrix (protocol_matrix.py). One line of JSON on stdout.

  mcp URL             the official MCP SDK 2.x client (auto era: server/discover, else the
                      handshake): {"tools": [names], "version": negotiated}; run in its venv
  grpc HOST:PORT SVC  grpcio's health stub, Check: {"status": "SERVING" | ...}
"""
import asyncio
import json
import sys


async def mcp_tools(url):
    from mcp.client.client import Client
    async with Client(url) as client:
        tools = await client.list_tools()
        names = [t.name for t in tools.tools]
        version = getattr(client, "protocol_version", None)
        return {"tools": names, "version": str(version) if version else ""}


def grpc_status(target, service):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            return {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}
        except grpc.RpcError as e:
            return {"status": e.code().name}


def main():
    kind = sys.argv[1]
    if kind == "mcp":
        print(json.dumps(asyncio.run(mcp_tools(sys.argv[2]))))
    elif kind == "grpc":
        print(json.dumps(grpc_status(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")))
    else:
        sys.exit(f"unknown oracle {kind!r}")


if __name__ == "__main__":
    main()
