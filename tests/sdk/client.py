"""One call of the official A2A SDK client (a2a-sdk), as a test step.

Takes one JSON object on the command line and prints one JSON object:
  {"url": gateway base URL, "token": bearer or null, "version": "1.0"|"0.3",
   "stream": bool, "op": "card"|"send"|"get"|"cancel"|"subscribe",
   "task": id, "context": id, "text": str, "data": object}
The card is always fetched from `url` (as a client finds an agent), and
the client calls the URL the card names. Prints
  {"card": the card as the SDK parsed it, "events": [each event the SDK
   yielded, as JSON], "error": "Type: message" when the SDK raised}
"""

import asyncio
import json
import sys
import uuid

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import A2ACardResolver
from a2a.helpers.proto_helpers import new_data_part, new_text_part
from a2a.types import CancelTaskRequest, GetTaskRequest, Message, Role, SendMessageRequest, SubscribeToTaskRequest


async def run(spec: dict) -> dict:
    headers = {"authorization": f"Bearer {spec['token']}"} if spec.get("token") else {}
    out: dict = {"events": []}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await A2ACardResolver(http, spec["url"]).get_agent_card()
        out["card"] = MessageToDict(card)
        if spec["op"] == "card":
            return out
        if spec.get("version") == "0.3":
            # The SDK's v0.3 compatibility mode: the same interface, spoken
            # as A2A 0.3 JSON-RPC.
            for interface in card.supported_interfaces:
                interface.protocol_version = "0.3"
        config = ClientConfig(httpx_client=http, streaming=bool(spec.get("stream")))
        client = ClientFactory(config).create(card)
        try:
            if spec["op"] == "send":
                parts = []
                if spec.get("text"):
                    parts.append(new_text_part(spec["text"]))
                if spec.get("data") is not None:
                    parts.append(new_data_part(spec["data"]))
                message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts,
                                  task_id=spec.get("task") or "", context_id=spec.get("context") or "")
                async for event in client.send_message(SendMessageRequest(message=message)):
                    out["events"].append(MessageToDict(event))
            elif spec["op"] == "get":
                out["events"].append({"task": MessageToDict(await client.get_task(GetTaskRequest(id=spec["task"])))})
            elif spec["op"] == "cancel":
                out["events"].append({"task": MessageToDict(await client.cancel_task(CancelTaskRequest(id=spec["task"])))})
            elif spec["op"] == "subscribe":
                async for event in client.subscribe(SubscribeToTaskRequest(id=spec["task"])):
                    out["events"].append(MessageToDict(event))
        except Exception as error:  # the test asserts on what the SDK made of it
            out["error"] = f"{type(error).__name__}: {error}"
        finally:
            await client.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
