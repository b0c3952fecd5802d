"""An MCP server built on the official SDK (`mcp`, Streamable HTTP at
/mcp), for the gateway's tests: one tool, `slow_report`, that answers
after `seconds`, sending a progress notification on its stream every few
seconds meanwhile (a long tool call, as a report or a search is).

Usage: mcp_server.py PORT
"""

import asyncio
import sys

import uvicorn

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("FinPort MCP")


@server.tool()
async def slow_report(seconds: float, ctx: Context) -> str:
    """A report that takes `seconds` to make."""
    waited = 0.0
    while waited < seconds:
        step = min(4.0, seconds - waited)
        await asyncio.sleep(step)
        waited += step
        await ctx.report_progress(waited, seconds)
    return f"report ready after {seconds:g} s"


def main() -> None:
    port = int(sys.argv[1])
    # Behind the gateway the Host header names the gateway, not this port.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(streamable_http_path="/mcp", transport_security=security)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
