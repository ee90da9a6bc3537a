"""The aiohttp application: `create_app(service)`.

Routes: `/sru` (the union database) and `/sru/{database}`, GET and POST. Other parts of the
server add their own routes through `extensions` (callables that receive the application
before it starts: the JSON API under `/api/v1`, `/metrics`), so this module stays the one
place the application is assembled. State lives in app keys, never in module globals.
"""
from __future__ import annotations

from typing import Callable, Sequence

from aiohttp import web

from federation.api import install_api
from federation.search import SearchService
from federation.sruendpoint import SRUEndpoint, SRUSettings

SERVICE_KEY = web.AppKey("search_service", SearchService)
SRU_SETTINGS_KEY = web.AppKey("sru_settings", SRUSettings)
SRU_ENDPOINT_KEY = web.AppKey("sru_endpoint", SRUEndpoint)

Extension = Callable[[web.Application], None]

MAX_REQUEST_BYTES = 1 << 20


def create_app(service: SearchService, *, sru_settings: SRUSettings | None = None,
               extensions: Sequence[Extension] = ()) -> web.Application:
    """`sru_settings`: the SRU limits; by default those of the network's rule set (`sru:`)."""
    if sru_settings is None:
        sru_settings = SRUSettings.for_network(service.network)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[SERVICE_KEY] = service
    app[SRU_SETTINGS_KEY] = sru_settings
    endpoint = SRUEndpoint(service, sru_settings)
    app[SRU_ENDPOINT_KEY] = endpoint
    for path in ("/sru", "/sru/", "/sru/{database}"):
        app.router.add_route("GET", path, endpoint.handle)
        app.router.add_route("POST", path, endpoint.handle)
    install_api(app, service)
    for extend in extensions:
        extend(app)
    return app
