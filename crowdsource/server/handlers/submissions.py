"""Submissions: submit, read your own back (a host: every one), select your final ones."""

from __future__ import annotations

from crowdsource.server.handlers.base import ID_ROUTE, APIHandler, path_id, query_flag


class CompetitionSubmissionsHandler(APIHandler):
    """`/competitions/{id}/submissions`: submit, or list yours."""

    frame_methods = ("POST",)

    async def post(self, cid: str) -> None:
        """Submit predictions (JSON or Parquet); `?wait=false` answers 202 before scoring."""
        wait = query_flag(self.get_argument("wait", None), "wait", default=True)
        data, new = await self.submissions.submit(
            path_id(cid, "competition"),
            self.participant,
            self.upload,
            self.request.headers.get("Content-Type"),
            key=self.request.headers.get("Idempotency-Key"),
            wait=wait,
            gone=lambda: self.gone,
        )
        self.send(data, (201 if wait else 202) if new else 200)

    async def get(self, cid: str) -> None:
        """Your submissions to this competition (every one, for its host)."""
        cid_ = path_id(cid, "competition")
        self.send({"submissions": await self.submissions.of_competition(self.participant, cid_)})


class FinalHandler(APIHandler):
    """`/competitions/{id}/final`: your final submissions, the ones the private board ranks."""

    async def get(self, cid: str) -> None:
        """Your final submissions (selected, or your best public ones)."""
        self.send(await self.submissions.finals(path_id(cid, "competition"), self.participant))

    async def put(self, cid: str) -> None:
        """Select your final submissions: `{"submissions": [id, ...]}` (until close)."""
        cid_ = path_id(cid, "competition")
        body = await self.json_body()
        self.send(await self.submissions.select_finals(cid_, self.participant, body))


class SubmissionsHandler(APIHandler):
    """`/submissions`: all of yours."""

    async def get(self) -> None:
        """Your submissions, newest first."""
        self.send({"submissions": await self.submissions.mine(self.participant)})


class SubmissionHandler(APIHandler):
    """`/submissions/{id}`."""

    async def get(self, sid: str) -> None:
        """One submission (owner or host)."""
        self.send(await self.submissions.get(path_id(sid, "submission"), self.participant))


class PredictionsHandler(APIHandler):
    """`/submissions/{id}/predictions`: the owner's own predictions."""

    async def get(self, sid: str) -> None:
        """The predictions, as JSON or Parquet."""
        await self.send_frame(
            await self.submissions.predictions(path_id(sid, "submission"), self.participant)
        )


class ProvenanceHandler(APIHandler):
    """`/submissions/{id}/provenance`: where it came from (owner; host after close)."""

    async def get(self, sid: str) -> None:
        """Its function, code digest, shared source and environment."""
        self.send(await self.submissions.provenance(path_id(sid, "submission"), self.participant))


default_handlers = [
    (f"/api/v1/competitions/{ID_ROUTE}/submissions", CompetitionSubmissionsHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/final", FinalHandler),
    (r"/api/v1/submissions", SubmissionsHandler),
    (f"/api/v1/submissions/{ID_ROUTE}", SubmissionHandler),
    (f"/api/v1/submissions/{ID_ROUTE}/predictions", PredictionsHandler),
    (f"/api/v1/submissions/{ID_ROUTE}/provenance", ProvenanceHandler),
]
