"""One tool call with the official MCP SDK client (`mcp`, Streamable
HTTP), as a test step. Takes one JSON object on the command line,
  {"url": the MCP endpoint, "token": bearer, "tool": name, "arguments": {...}}
and prints {"result": the tool's text} or {"error": "Type: message"}.
"""

import asyncio
import json
import sys

import httpx2

from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def run(spec: dict) -> dict:
    headers = {"authorization": f"Bearer {spec['token']}"}
    try:
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60, read=120)) as http:
            async with Client(streamable_http_client(spec["url"], http_client=http)) as client:
                result = await client.call_tool(spec["tool"], spec.get("arguments", {}))
                texts = [block.text for block in result.content if getattr(block, "text", None)]
                return {"result": "\n".join(texts), "is_error": bool(result.is_error)}
    except BaseException as error:  # the test asserts on what the SDK made of it
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
        return {"error": f"{type(error).__name__}: {error}"}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
