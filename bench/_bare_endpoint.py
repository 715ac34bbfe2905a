"""The bare endpoint of bench/webhook_intake.py: answers every request 200, does nothing.

A raw ASGI app under uvicorn with the options the services run with (one process,
no access log), so the ratio of the gateway's webhook figures to this one's is the
cost of PyTake's intake over the HTTP stack itself, on the same box in the same run.
It reads the request body (any endpoint must receive it) and ignores it.

Usage: python bench/_bare_endpoint.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

OK = b'{"status":"ok"}'


async def lifespan(receive: Any, send: Any) -> None:
    """An ASGI lifespan with nothing to start or stop (also bench/gateway_proxy.py's)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": OK})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
