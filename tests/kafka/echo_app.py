"""A minimal Faust app for the broker round-trip test: every message on the input topic is
consumed by a Faust agent and written back, tagged, to the output topic by Faust.

Run: ``python echo_app.py worker`` with ECHO_BROKER, ECHO_IN, ECHO_OUT and ECHO_DATADIR set.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    "echo-" + os.environ["ECHO_IN"],
    broker="kafka://" + os.environ["ECHO_BROKER"],
    datadir=os.environ["ECHO_DATADIR"],
    store="memory://",
    web_enabled=False,
    web_port=int(os.environ["ECHO_WEB_PORT"]),
    web_host="127.0.0.1",
    topic_allow_declare=True,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["ECHO_IN"], value_serializer="raw")
sink = app.topic(os.environ["ECHO_OUT"], value_serializer="raw")


@app.agent(source)
async def echo(stream):  # type: ignore[no-untyped-def]
    async for value in stream:
        await sink.send(key=value, value=b"faust:" + value)


if __name__ == "__main__":
    app.main()
