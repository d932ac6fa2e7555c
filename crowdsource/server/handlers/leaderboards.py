"""Leaderboards: one competition's board (or a page of it), or every competition's."""

from __future__ import annotations

from crowdsource.errors import BadRequest
from crowdsource.server.ensemble import check_k
from crowdsource.server.handlers.base import ID_ROUTE, APIHandler, path_id
from crowdsource.server.leaderboards import PAGE_MOST


def page_number(text: str | None, name: str, *, least: int, most: int) -> int | None:
    """An optional whole number from the query, else a 400 that says the range."""
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = least - 1
    if not least <= value <= most:
        raise BadRequest(f"'{name}' must be a whole number from {least} to {most}, not {text!r}")
    return value


def page(handler: APIHandler, *, default: int | None, most: int) -> tuple[int | None, int]:
    """`limit` (1 to `most`, else `default`) and `offset` (0 or more) from the query."""
    limit = page_number(handler.get_argument("limit", None), "limit", least=1, most=most)
    offset = page_number(handler.get_argument("offset", None), "offset", least=0, most=2**31 - 1)
    return default if limit is None else limit, offset or 0


class LeaderboardHandler(APIHandler):
    """`/competitions/{id}/leaderboard?board=public|private&limit=&offset=&around=me`."""

    async def get(self, cid: str) -> None:
        """One board, or a page of it, as JSON or (`Accept: text/csv`) as CSV."""
        board, cid_ = self.get_argument("board", "public"), path_id(cid, "competition")
        limit, offset = page(self, default=None, most=PAGE_MOST)
        around = self.get_argument("around", None)
        if around not in (None, "me"):
            raise BadRequest("'around' may only be 'me' (your own entry, with a token)")
        if around is not None:
            self.send(
                await self.leaderboards.board(
                    cid_, board=board, viewer=self.participant, limit=limit, around=True
                )
            )
            return
        if "text/csv" in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.finish(await self.leaderboards.board_csv(cid_, board=board, viewer=self.viewer))
            return
        if limit is None and offset == 0:  # the whole board: encoded once per change
            self.finish(await self.leaderboards.board_text(cid_, board=board, viewer=self.viewer))
            return
        self.send(
            await self.leaderboards.board(
                cid_, board=board, viewer=self.viewer, limit=limit, offset=offset
            )
        )


class EnsembleHandler(APIHandler):
    """`/competitions/{id}/ensemble?k=`: the crowd's ensemble, for the host."""

    async def get(self, cid: str) -> None:
        """The blend of the top k entries, or (no `k`) its score for every k."""
        k = check_k(self.get_argument("k", None))
        self.send(await self.ensembles.ensemble(path_id(cid, "competition"), self.participant, k=k))


class LeaderboardsHandler(APIHandler):
    """`/leaderboards?limit=&offset=`: a page of competitions' boards."""

    async def get(self) -> None:
        """A page of boards (50 competitions unless `limit` says, at most 500)."""
        limit, offset = page(self, default=50, most=500)
        assert limit is not None
        self.send(await self.leaderboards.every(limit=limit, offset=offset))


default_handlers = [
    (f"/api/v1/competitions/{ID_ROUTE}/leaderboard", LeaderboardHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/ensemble", EnsembleHandler),
    (r"/api/v1/leaderboards", LeaderboardsHandler),
]
