"""The API's own description, and what operators and load balancers ask: liveness,
readiness and metrics."""

from __future__ import annotations

from crowdsource.server import openapi
from crowdsource.server.handlers.base import APIHandler
from crowdsource.server.monitoring import metrics


class OpenAPIHandler(APIHandler):
    """`/api/v1/openapi.json`."""

    def get(self) -> None:
        """The OpenAPI document."""
        self.send(openapi.document())


class HealthHandler(APIHandler):
    """`/healthz`: the process answers (no database, nothing else asked)."""

    def get(self) -> None:
        """Alive."""
        self.send({"status": "ok"})


class ReadyHandler(APIHandler):
    """`/readyz`: 200 when this process can serve, else 503 saying what is not ready."""

    async def get(self) -> None:
        """Ready, or what is not."""
        problems = await self.settings["readiness"].problems()
        status = "not ready" if problems else "ready"
        self.send({"status": status, "problems": problems}, 503 if problems else 200)


class MetricsHandler(APIHandler):
    """`/metrics`: Prometheus metrics of every process of this server."""

    def get(self) -> None:
        """The exposition text."""
        readiness = self.settings.get("readiness")
        if readiness is not None:  # this process's pool as it is now
            metrics().sample_pool(readiness.store.engine.pool)
        body, content_type = metrics().scrape()
        self.set_header("Content-Type", content_type)
        self.finish(body)


default_handlers = [
    (r"/api/v1/openapi.json", OpenAPIHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/metrics", MetricsHandler),
]
