"""Reference A2A agent of protocol 0.3 for the canary tests: a2a-sdk 0.3.x (its own venv)
serving a whole agent whose card announces 0.3 and whose executor runs each task through the
SDK's TaskUpdater. --behaviour as in a2a_canary_server.py (answer, fail, reject, input, auth,
slow); here `answer` completes the task with the answer in the final status message rather than
in an artifact, the other place a reply's text may be."""
import argparse
import asyncio
import re

from a2a.server.agent_execution import AgentExecutor
from a2a.server.apps import A2AStarletteApplication
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, Part, TextPart
from a2a.utils import new_task

from _serve import free_port, serve


def answer(text):
    """The arithmetic the canary asks about, else the text itself (as the 1.0 peer)."""
    sum_ = re.search(r"(-?\d+)\s*\+\s*(-?\d+)", text)
    if sum_:
        return str(int(sum_.group(1)) + int(sum_.group(2)))
    return text


class Canary(AgentExecutor):
    def __init__(self, behaviour, delay):
        self.behaviour = behaviour
        self.delay = delay

    async def execute(self, context, event_queue):
        task = context.current_task or new_task(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        say = lambda text: updater.new_agent_message([Part(root=TextPart(text=text))])  # noqa: E731
        if self.behaviour == "fail":
            await updater.failed(say("model backend unavailable"))
        elif self.behaviour == "reject":
            await updater.reject(say("this agent does not do arithmetic"))
        elif self.behaviour == "input":
            await updater.requires_input(say("Which number system do you mean?"), final=True)
        elif self.behaviour == "auth":
            await updater.requires_auth(say("Sign in to continue."), final=True)
        else:
            if self.behaviour == "slow":
                await asyncio.sleep(self.delay)
            await updater.complete(say(answer(context.get_user_input())))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--behaviour", default="answer",
                        choices=["answer", "fail", "reject", "input", "auth", "slow"])
    parser.add_argument("--delay", type=float, default=5.0)
    args = parser.parse_args()
    port = free_port()
    card = AgentCard(
        name="Peer Canary Agent 0.3",
        description="Answers small questions for the canary tests.",
        version="0.3.0",
        url=f"http://127.0.0.1:{port}/",
        protocol_version="0.3.0",
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="arithmetic", name="Arithmetic",
                           description="Adds two numbers.", tags=["math"])],
    )
    handler = DefaultRequestHandler(agent_executor=Canary(args.behaviour, args.delay),
                                    task_store=InMemoryTaskStore())
    serve(A2AStarletteApplication(agent_card=card, http_handler=handler).build(), port)


if __name__ == "__main__":
    main()
