"""Reference A2A agent for the probe tests: a2a-sdk's own agent card route serving a card built
from its types. --old-path serves it only at the older /.well-known/agent.json; --invalid serves
a card without `skills` (written by hand: the SDK cannot produce one)."""
import argparse

from a2a.server.routes import create_agent_card_routes
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from _serve import serve


def card(port):
    return AgentCard(
        name="Peer Travel Agent",
        description="Books trips for the probe tests.",
        version="1.4.2",
        supported_interfaces=[AgentInterface(
            url=f"http://127.0.0.1:{port}/", protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="book-flight", name="Book a flight",
                           description="Books a flight.", tags=["travel"])],
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--old-path", action="store_true")
    parser.add_argument("--invalid", action="store_true")
    args = parser.parse_args()
    from _serve import free_port
    port = free_port()
    if args.invalid:
        async def broken(request):
            return JSONResponse({"name": "Broken", "description": "", "version": "1",
                                 "url": f"http://127.0.0.1:{port}/", "capabilities": {},
                                 "defaultInputModes": ["text/plain"],
                                 "defaultOutputModes": ["text/plain"]})
        routes = [Route("/.well-known/agent-card.json", broken)]
    else:
        path = "/.well-known/agent.json" if args.old_path else "/.well-known/agent-card.json"
        routes = create_agent_card_routes(card(port), card_url=path)
    serve(Starlette(routes=routes), port)


if __name__ == "__main__":
    main()
