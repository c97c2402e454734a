"""Reference A2A agent of protocol 1.0 for the canary tests: a2a-sdk 1.x serving a whole agent
(its card at /.well-known/agent-card.json, JSON-RPC at /) whose executor runs each task through
the SDK's TaskUpdater. --behaviour picks what the task does:

  answer   works out "What is A+B?" (any other text is echoed) and completes the task with the
           answer as a text artifact
  fail     fails the task, with a status message saying why
  reject   rejects the task
  input    asks for input (input-required) with a question
  auth     asks for authorization (auth-required)
  slow     waits --delay seconds, then answers as `answer` does

--v03-compat also serves protocol 0.3's `message/send` on the same endpoint (the SDK's
compatibility adapter), though the card announces 1.0."""
import argparse
import asyncio
import re

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette

from _serve import free_port, serve


def answer(text):
    """The arithmetic the canary asks about, else the text itself."""
    sum_ = re.search(r"(-?\d+)\s*\+\s*(-?\d+)", text)
    if sum_:
        return str(int(sum_.group(1)) + int(sum_.group(2)))
    return text


class Canary(AgentExecutor):
    def __init__(self, behaviour, delay):
        self.behaviour = behaviour
        self.delay = delay

    async def execute(self, context, event_queue):
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        say = lambda text: updater.new_agent_message([new_text_part(text)])  # noqa: E731
        if self.behaviour == "fail":
            await updater.failed(say("model backend unavailable"))
        elif self.behaviour == "reject":
            await updater.reject(say("this agent does not do arithmetic"))
        elif self.behaviour == "input":
            await updater.requires_input(say("Which number system do you mean?"))
        elif self.behaviour == "auth":
            await updater.requires_auth(say("Sign in to continue."))
        else:
            if self.behaviour == "slow":
                await asyncio.sleep(self.delay)
            await updater.add_artifact([new_text_part(answer(context.get_user_input()))],
                                       name="answer")
            await updater.complete()

    async def cancel(self, context, event_queue):
        raise NotImplementedError


def card(port):
    return AgentCard(
        name="Peer Canary Agent",
        description="Answers small questions for the canary tests.",
        version="1.0.0",
        supported_interfaces=[AgentInterface(
            url=f"http://127.0.0.1:{port}/", protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="arithmetic", name="Arithmetic",
                           description="Adds two numbers.", tags=["math"])],
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--behaviour", default="answer",
                        choices=["answer", "fail", "reject", "input", "auth", "slow"])
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument("--v03-compat", action="store_true")
    args = parser.parse_args()
    port = free_port()
    agent_card = card(port)
    handler = DefaultRequestHandler(agent_executor=Canary(args.behaviour, args.delay),
                                    task_store=InMemoryTaskStore(), agent_card=agent_card)
    routes = create_agent_card_routes(agent_card) + create_jsonrpc_routes(
        handler, "/", enable_v0_3_compat=args.v03_compat)
    serve(Starlette(routes=routes), port)


if __name__ == "__main__":
    main()
