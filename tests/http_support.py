"""The JSON/SRU application on a free loopback port, for tests that drive it over HTTP.

    from http_support import served_app

    async with served_app(service) as root:      # "http://127.0.0.1:<port>"
        async with ClientSession() as http:
            await http.get(root + API_PREFIX + "/libraries")
    # the runner is cleaned up here

The service (and the store behind it) belongs to the caller: opening and closing it stays there.
"""
from __future__ import annotations

import contextlib
from typing import AsyncIterator

from aiohttp import web

from federation.app import create_app
from federation.search import SearchService

__all__ = ["served_app"]


@contextlib.asynccontextmanager
async def served_app(service: SearchService) -> AsyncIterator[str]:
    """Serve `create_app(service)` on 127.0.0.1 and yield its root URL `http://host:port`.

    The runner is cleaned up on the way out, also when setup or the site's start fails part-way
    (as `aiohttp.web.run_app` does), so a failed start leaves no listening socket or app behind.
    """
    runner = web.AppRunner(create_app(service))
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
