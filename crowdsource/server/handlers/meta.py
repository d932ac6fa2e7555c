"""The API's own description."""

from __future__ import annotations

from crowdsource.server import openapi
from crowdsource.server.handlers.base import APIHandler


class OpenAPIHandler(APIHandler):
    """`/api/v1/openapi.json`."""

    def get(self) -> None:
        """The OpenAPI document."""
        self.send(openapi.document())


default_handlers = [(r"/api/v1/openapi.json", OpenAPIHandler)]
