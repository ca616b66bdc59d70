"""The fake gateway keeps Discord's IDENTIFY rate limit: one IDENTIFY per bucket
(``shard_id % max_concurrency``) in 5 s, op 9 Invalid Session for one past it, and a
log of every IDENTIFY with its arrival time for tests to check clients against."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.fakediscord.server import FakeDiscord


async def _identify(fake: FakeDiscord, shard: list[int]) -> dict[str, Any]:
    """Open a gateway websocket, IDENTIFY as `shard`, return the gateway's answer."""
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.config["gateway_url"]) as ws:
        hello = json.loads((await ws.receive(timeout=10)).data)
        assert hello["op"] == 10
        await ws.send_str(json.dumps({"op": 2, "d": {"token": fake.config["token"], "intents": 0,
                                                     "properties": {}, "shard": shard}}))
        return json.loads((await ws.receive(timeout=10)).data)


async def _gateway_bot(fake: FakeDiscord) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            fake.config["api_base"] + "/gateway/bot", headers={"Authorization": f"Bot {fake.config['token']}"}) as r:
        assert r.status == 200
        return await r.json()


def test_an_identify_of_a_busy_bucket_is_refused_with_op_9_and_logged() -> None:
    with FakeDiscord(voice=False, max_concurrency=2) as fake:
        assert fake.run(_gateway_bot(fake))["session_start_limit"]["max_concurrency"] == 2
        answers = [fake.run(_identify(fake, [shard, 4])) for shard in (0, 1, 2, 3)]
        assert [(a["op"], a.get("t")) for a in answers] == [(0, "READY"), (0, "READY"), (9, None), (9, None)]
        assert answers[2]["d"] is False  # Discord's "do not resume": IDENTIFY again later
        log = fake.identify_log()
        assert [(a.shard_id, a.bucket, a.accepted) for a in log] == [
            (0, 0, True), (1, 1, True), (2, 0, False), (3, 1, False)]
        assert all(a.shard_count == 4 for a in log)
        assert log[0].at <= log[1].at <= log[2].at <= log[3].at
