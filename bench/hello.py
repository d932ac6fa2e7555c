"""Tornado hello-world: the floor for request throughput (`python bench/hello.py PORT`).

GET / answers "Hello, world"; POST /post reads the body and answers a small JSON object,
the floor for a submission that is neither scored nor stored."""

import asyncio
import sys

import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")


class Received(tornado.web.RequestHandler):
    def post(self) -> None:
        self.set_status(201)
        self.write({"received": len(self.request.body)})


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/", Hello), (r"/post", Received)])
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
