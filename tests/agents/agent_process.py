"""An edge agent in its own process, for scaling and silence tests: answers with its instance."""

from __future__ import annotations

import asyncio
import sys

from edge_agent import Agent, Request


async def main(url: str, instance: str) -> None:
    agent = Agent("echo", nats_url=url, instance=instance, heartbeat_seconds=0.2)

    @agent.handle("work.echo")
    async def echo(request: Request) -> dict[str, object]:
        return {"instance": instance, "n": request.json()["n"]}

    await agent.start()
    print("ready", flush=True)
    await agent.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
