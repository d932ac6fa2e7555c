"""Leaderboards: one competition's board, or all of them."""

from __future__ import annotations

from crowdsource.server.ensemble import check_k
from crowdsource.server.handlers.base import ID_ROUTE, APIHandler, path_id


class LeaderboardHandler(APIHandler):
    """`/competitions/{id}/leaderboard?board=public|private`."""

    async def get(self, cid: str) -> None:
        """One board, as JSON or (`Accept: text/csv`) as CSV."""
        board, cid_ = self.get_argument("board", "public"), path_id(cid, "competition")
        if "text/csv" in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.finish(await self.leaderboards.board_csv(cid_, board=board, viewer=self.viewer))
            return
        self.finish(await self.leaderboards.board_text(cid_, board=board, viewer=self.viewer))


class EnsembleHandler(APIHandler):
    """`/competitions/{id}/ensemble?k=`: the crowd's ensemble, for the host."""

    async def get(self, cid: str) -> None:
        """The blend of the top k entries, or (no `k`) its score for every k."""
        k = check_k(self.get_argument("k", None))
        self.send(await self.ensembles.ensemble(path_id(cid, "competition"), self.participant, k=k))


class LeaderboardsHandler(APIHandler):
    """`/leaderboards`: every competition's boards."""

    async def get(self) -> None:
        """All boards."""
        self.send({"leaderboards": await self.leaderboards.every()})


default_handlers = [
    (f"/api/v1/competitions/{ID_ROUTE}/leaderboard", LeaderboardHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/ensemble", EnsembleHandler),
    (r"/api/v1/leaderboards", LeaderboardsHandler),
]
