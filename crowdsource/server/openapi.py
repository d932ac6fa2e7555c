"""The OpenAPI 3.1 document of API v1, served at /api/v1/openapi.json: generated from the
protocol (crowdsource.protocol), never written here."""

from __future__ import annotations

from crowdsource.protocol.openapi import document
from crowdsource.protocol.types import MAX_ID

__all__ = ["MAX_ID", "document"]
