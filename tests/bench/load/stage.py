"""The benchmark's stage: a loopback Discord, its load world and the generator, in this process.

The bot under test runs in another process; everything of the stage's runs
on the fake's event loop thread, so this process's CPU time is the load
generator's (plus the fake's gateway, which is idle while media flows).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from tests.fakediscord.loadgen import LoadGenerator, LoadRoom, LoadStats, build_load_world, opus_loop, shard_of
from tests.fakediscord.server import FakeDiscord

__all__ = ["Stage", "rooms_for", "rooms_on"]

_log = logging.getLogger(__name__)

#: How long the speakers' DAVE groups (and the bot's joins) may take to settle.
SETTLE_TIMEOUT = 600.0


def rooms_for(speakers: int, per_room: int, shards: int = 1) -> int:
    """Voice channels (one per guild) needed for ``speakers`` at most ``per_room`` each,
    rounded up to a multiple of ``shards`` so that every shard gets as many (when there
    are speakers enough)."""
    rooms = max(1, -(-speakers // per_room))
    return min(-(-rooms // shards) * shards, max(rooms, speakers))


def rooms_on(rooms: list[LoadRoom], shard_count: int | None, shard_ids: tuple[int, ...] | None) -> list[LoadRoom]:
    """The rooms whose guilds Discord routes to ``shard_ids`` of ``shard_count`` (all without ids)."""
    if shard_count is None or shard_ids is None:
        return list(rooms)
    return [room for room in rooms if shard_of(room.guild_id, shard_count) in shard_ids]


@dataclass
class Stage:
    """A started fake with ``speakers`` speakers spread over ``rooms`` guilds, in voice."""

    fake: FakeDiscord
    rooms: list[LoadRoom]
    generator: LoadGenerator
    #: Seconds the speakers took to join voice and settle their DAVE groups.
    setup_seconds: float

    @classmethod
    def start(cls, *, dave: bool, speakers: int, rooms: int, shards: int = 1) -> Stage:
        """Start the fake, build the world (guilds taking turns over ``shards`` gateway shards),
        put every speaker in voice and wait for the groups."""
        fake = FakeDiscord(dave=dave).start()
        try:
            bot = fake.default.bot
            built = fake.run(lambda: build_load_world(fake.world, bot, rooms=rooms, speakers=speakers, shards=shards))
            generator = LoadGenerator(fake.voice, built, opus_loop())
            began = time.monotonic()
            fake.run(generator.join(), timeout=SETTLE_TIMEOUT)
            cls._wait(fake, generator, None, "the speakers' DAVE groups")
            return cls(fake, built, generator, time.monotonic() - began)
        except BaseException:
            fake.close()
            raise

    @property
    def bot_id(self) -> int:
        """The bot user's id (every client under test logs in as it)."""
        return self.fake.default.bot.id

    def wait_listener(self) -> float:
        """Wait until the bot is connected in every room and in every DAVE group; return seconds waited."""
        began = time.monotonic()
        self._wait(self.fake, self.generator, self.bot_id, "the bot in every room's DAVE group")
        return time.monotonic() - began

    @staticmethod
    def _wait(fake: FakeDiscord, generator: LoadGenerator, listener: int | None, what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not fake.run(lambda: generator.ready(listener)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not settle within {SETTLE_TIMEOUT:g} s")
            time.sleep(0.2)

    def stream(self, seconds: float) -> LoadStats:
        """Play every speaker to the bot for ``seconds``; blocks until done."""
        return self.fake.run(self.generator.stream(seconds, self.bot_id), timeout=seconds + 60)

    def close(self) -> None:
        """Stop the fake with the speakers still in voice.

        Letting hundreds of DAVE speakers leave first would cost a group
        commit per leave on the fake's loop (minutes at 300), for nothing:
        the bot under test is gone by then.
        """
        self.fake.close()
