"""Competitions: host, list, detail, edit, delete, dataset, answer rows, close, disqualify."""

from __future__ import annotations

from crowdsource.server.handlers.base import ID_ROUTE, APIHandler, path_id
from crowdsource.server.handlers.leaderboards import page


class CompetitionsHandler(APIHandler):
    """`/competitions`: list (anyone) and host (with a token)."""

    frame_methods = ("POST",)

    async def get(self) -> None:
        """A page of competitions (`limit`, default 100, at most 1000; `offset`), filtered by
        `type` and `status`."""
        limit, offset = page(self, default=100, most=1000)
        found, total = await self.competitions.page(
            kind=self.get_argument("type", None),
            state=self.get_argument("status", None),
            limit=limit,
            offset=offset,
        )
        self.send({"competitions": found, "total": total, "limit": limit, "offset": offset})

    async def post(self) -> None:
        """Host a competition: a JSON spec with its frames, or a multipart/form-data body
        with a JSON `spec` part and Parquet `dataset` and `answer` parts."""
        content_type = self.request.headers.get("Content-Type")
        self.send(await self.competitions.host(self.participant, self.upload, content_type), 201)


class CompetitionHandler(APIHandler):
    """`/competitions/{id}`."""

    async def get(self, cid: str) -> None:
        """One competition."""
        self.send(await self.competitions.get(path_id(cid, "competition")))

    async def patch(self, cid: str) -> None:
        """Edit title, description, close time or daily limit (host); a later close reopens."""
        cid_ = path_id(cid, "competition")
        self.send(await self.competitions.edit(cid_, self.participant, await self.json_body()))

    async def delete(self, cid: str) -> None:
        """Delete it if it has no submissions, else archive it (host)."""
        self.send(await self.competitions.remove(path_id(cid, "competition"), self.participant))


class DatasetHandler(APIHandler):
    """`/competitions/{id}/dataset`: the frame participants see."""

    async def get(self, cid: str) -> None:
        """The dataset, as JSON or Parquet."""
        await self.send_frame(await self.competitions.dataset(path_id(cid, "competition")))


class AnswerHandler(APIHandler):
    """`/competitions/{id}/answer`: the hidden answer, for its host."""

    frame_methods = ("POST",)

    async def get(self, cid: str) -> None:
        """The answer rows known so far."""
        await self.send_frame(
            await self.competitions.answer(path_id(cid, "competition"), self.participant)
        )

    async def post(self, cid: str) -> None:
        """Add or replace answer rows; affected submissions are re-scored."""
        result = await self.submissions.resolve(
            path_id(cid, "competition"),
            self.participant,
            await self.read_body(),
            self.request.headers.get("Content-Type"),
        )
        self.send(result)


class CloseHandler(APIHandler):
    """`/competitions/{id}/close`: the host closes it now."""

    async def post(self, cid: str) -> None:
        """Close now."""
        self.send(await self.competitions.close_now(path_id(cid, "competition"), self.participant))


class DisqualifiedHandler(APIHandler):
    """`/competitions/{id}/disqualified`: who the host disqualified, and why."""

    async def get(self, cid: str) -> None:
        """The disqualified participants (host)."""
        cid_ = path_id(cid, "competition")
        self.send(await self.competitions.disqualified(cid_, self.participant))

    async def post(self, cid: str) -> None:
        """Disqualify a participant with a reason (host)."""
        cid_ = path_id(cid, "competition")
        body = await self.json_body()
        self.send(await self.competitions.disqualify(cid_, self.participant, body), 201)


class RequalifyHandler(APIHandler):
    """`/competitions/{id}/disqualified/{participant id}`."""

    async def delete(self, cid: str, pid: str) -> None:
        """Lift a disqualification (host)."""
        cid_, pid_ = path_id(cid, "competition"), path_id(pid, "participant")
        self.send(await self.competitions.requalify(cid_, self.participant, pid_))


default_handlers = [
    (r"/api/v1/competitions", CompetitionsHandler),
    (f"/api/v1/competitions/{ID_ROUTE}", CompetitionHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/dataset", DatasetHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/answer", AnswerHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/close", CloseHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/disqualified", DisqualifiedHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/disqualified/{ID_ROUTE}", RequalifyHandler),
]
