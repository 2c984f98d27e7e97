"""An MCP client built on the official Python SDK (`mcp` on PyPI), as an agent would use it.

usage: client.py URL PLAN
  URL   the gateway's MCP endpoint
  PLAN  JSON: {"token": a bearer token or null, "calls": [[tool name, arguments], ...]}

Prints, as JSON: the server's name and protocol version, the tools listed, and each call's
result (isError, structuredContent, the text of its content).
"""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


async def main(url, plan):
    headers = {"authorization": "Bearer " + plan["token"]} if plan.get("token") else {}
    out = {"calls": []}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["server"] = init.server_info.name
                out["protocolVersion"] = init.protocol_version
                listed = await session.list_tools()
                out["tools"] = [tool.model_dump(by_alias=True, exclude_none=True, mode="json") for tool in listed.tools]
                for name, arguments in plan["calls"]:
                    result = await session.call_tool(name, arguments)
                    out["calls"].append({
                        "isError": result.is_error,
                        "structuredContent": result.structured_content,
                        "text": [block.text for block in result.content if block.type == "text"],
                    })
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
