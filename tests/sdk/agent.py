"""An A2A agent built on the official SDK (a2a-sdk, protocol v1.0 with
v0.3 compatibility on the same endpoint), for the gateway's tests.

Every request it receives is written, as one JSON line, to the log file
named on the command line: method, path, headers and body, so a test can
assert what reached the agent (the injected token, the identity header,
no `auth_credentials`, `A2A-Version`).

What it does with a message (its text and data parts):
- `{"operation": "needs-bank-auth"}` and no bank token yet: the task goes
  auth-required, with no authorization URL (an agent-initiated challenge);
- text containing "slow": working, then, after `seconds` (data) or 17 s,
  completed (a stream that outlives Envoy's default 15 s route timeout);
- `{"keepOpen": true}`: input-required ("Done. Anything else?");
- anything else: completed, saying what it received.

Usage: agent.py PORT LOG_FILE
"""

import asyncio
import json
import sys

import uvicorn
from starlette.applications import Starlette

from a2a.helpers.proto_helpers import get_data_parts, new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers.default_request_handler_v2 import DefaultRequestHandlerV2
from a2a.server.routes.agent_card_routes import create_agent_card_routes
from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
from a2a.server.tasks.inmemory_task_store import InMemoryTaskStore
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Role


class TransferAgent(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        text = context.get_user_input()
        data = {}
        for part in get_data_parts(list(message.parts)):
            if isinstance(part, dict):
                data.update(part)

        def say(words: str):
            return new_text_message(words, context_id=task.context_id, task_id=task.id, role=Role.ROLE_AGENT)

        if data.get("operation") == "needs-bank-auth":
            await updater.requires_auth(say("I need your bank's authorization to continue."))
            return
        if "slow" in text:
            await updater.start_work(say("Working on it."))
            await asyncio.sleep(float(data.get("seconds", 17)))
            await updater.complete(say("Done, slowly."))
            return
        if data.get("keepOpen"):
            await updater.requires_input(say("Done. Anything else?"))
            return
        await updater.complete(say(f"Done: {text}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is not None:
            await TaskUpdater(event_queue, task.id, task.context_id).cancel()


class Record:
    """ASGI middleware: writes each request to the log, then serves it."""

    def __init__(self, app, log_path: str):
        self.app = app
        self.log_path = log_path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = []
        body = b""
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        line = {"method": scope["method"], "path": scope["path"], "headers": headers,
                "body": body.decode("utf-8", "replace")}
        with open(self.log_path, "a") as log:
            log.write(json.dumps(line) + "\n")
        replay = iter(received)

        async def replayed():
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replayed, send)


def main() -> None:
    port, log_path = int(sys.argv[1]), sys.argv[2]
    url = f"http://127.0.0.1:{port}/"
    card = AgentCard(
        name="Transfer Agent",
        description="Moves money; a transfer needs the user's bank authorization.",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="transfer", name="Transfer", description="Transfer money", tags=["payments"])],
    )
    handler = DefaultRequestHandlerV2(agent_executor=TransferAgent(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = create_agent_card_routes(card) + create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True)
    app = Record(Starlette(routes=routes), log_path)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
