"""Reference A2A agent of protocol 0.3 for the probe tests: a2a-sdk 0.3.x (its own venv)
serving a whole agent, whose card the SDK publishes at /.well-known/agent-card.json. Its
executor answers every message with "ok"."""
from a2a.server.agent_execution import AgentExecutor
from a2a.server.apps import A2AStarletteApplication
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from a2a.utils import new_agent_text_message

from _serve import free_port, serve


class Ok(AgentExecutor):
    async def execute(self, context, event_queue):
        await event_queue.enqueue_event(new_agent_text_message("ok"))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


def main():
    port = free_port()
    card = AgentCard(
        name="Peer Travel Agent 0.3",
        description="Books trips for the probe tests.",
        version="0.3.9",
        url=f"http://127.0.0.1:{port}/",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="book-flight", name="Book a flight",
                           description="Books a flight.", tags=["travel"])],
    )
    handler = DefaultRequestHandler(agent_executor=Ok(), task_store=InMemoryTaskStore())
    serve(A2AStarletteApplication(agent_card=card, http_handler=handler).build(), port)


if __name__ == "__main__":
    main()
