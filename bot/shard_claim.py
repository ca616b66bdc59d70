"""One process per gateway shard: the claim a bot process holds on its shards.

Before it connects to the gateway, a process takes its recordings folder's lock
(:mod:`bot.storage.folder_lock`) and then, in one transaction, a lease on every
shard it runs (:mod:`bot.storage.shard_leases`). A shard held by another live
process, or live leases made with another shard count, refuse the start in one
line (:class:`ShardClaimRefused`). A process that restarts on the same folder
(after kill -9, say) takes its own leases back at once: the folder's lock proves
its predecessor is gone.

While it runs, the process renews its leases every third of their lifetime
(``SHARD_LEASE_SECONDS``, a minute by default; timed by the database's clock). A
renewal the index cannot answer is logged once and tried again; the leases of a
process cut off from the index for longer lapse, and another process may then take
its shards. Should a renewal find that, the process must not go on recording the
same guilds as the new holder: ``on_lost`` is called once (the bot then finishes
every recording, as SIGINT would, and exits 1). A clean shutdown gives the leases up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.storage.folder_lock import FolderInUse, FolderLock
from bot.storage.shard_leases import Holder, ShardConflict, ShardLeases

__all__ = ["ShardClaim", "ShardClaimRefused"]

_log = logging.getLogger(__name__)


class ShardClaimRefused(Exception):
    """Another live process runs this process's shards or folder; ``str`` is one line for
    the operator, naming the setting and the other process."""


class ShardClaim:
    """The shards one process runs, held in the index while it runs them.

    ``shard_ids_set`` and ``shard_count_set`` say whether the operator chose the shards
    and the count (else every shard, and Discord's count), for the messages.
    A lease not renewed for ``lease_seconds`` (the database's clock) is free for another
    process; it is renewed every third of that.
    """

    def __init__(self, leases: ShardLeases, recordings_dir: Path, owner: str, *, shard_ids_set: bool,
                 shard_count_set: bool, lease_seconds: float) -> None:
        self._leases = leases
        self._recordings_dir = recordings_dir
        self._holder = Holder(owner, socket.gethostname(), os.getpid())
        self._ids_set = shard_ids_set
        self._count_set = shard_count_set
        self._lease_seconds = lease_seconds
        self._renew_seconds = lease_seconds / 3
        self._folder: FolderLock | None = None
        self._shards: tuple[int, ...] = ()
        self._shard_count = 0
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, shards: Sequence[int], shard_count: int) -> None:
        """Take the folder and ``shards`` of ``shard_count``; raises :class:`ShardClaimRefused`."""
        try:
            self._folder = FolderLock(self._recordings_dir)
        except FolderInUse as exc:
            raise ShardClaimRefused(f"RECORDINGS_DIR: another bot process ({exc.holder}) already uses this "
                                    "recordings folder; give each process its own RECORDINGS_DIR") from None
        conflict = await asyncio.to_thread(self._leases.claim, shards, shard_count, self._holder,
                                           ttl=self._lease_seconds)
        if conflict is not None:
            raise ShardClaimRefused(self._describe(conflict, shard_count))
        self._shards, self._shard_count = tuple(shards), shard_count
        _log.info("claimed shard(s) %s of %d for this process", ", ".join(map(str, shards)), shard_count)

    def keep_renewed(self, on_lost: Callable[[str], None]) -> None:
        """Renew the leases in the background; ``on_lost(line)`` once if another process took them."""
        self._renewer = asyncio.create_task(self._renew(on_lost), name="shard-leases")

    async def release(self) -> None:
        """Stop renewing and give the leases and the folder up (a clean shutdown)."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        if self._folder is None:
            return  # never got the folder: the leases under its name are another live process's
        # Holding the folder, every lease under its name is this process's (or a dead predecessor's).
        try:
            await asyncio.to_thread(self._leases.release, self._holder.owner)
        except Exception as exc:  # they lapse by themselves
            _log.warning("could not give up the shard leases (%s); they lapse in %g s", type(exc).__name__,
                         self._lease_seconds)
        self._folder.release()
        self._folder = None

    async def _renew(self, on_lost: Callable[[str], None]) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._renew_seconds)
            try:
                conflict = await asyncio.to_thread(self._leases.claim, self._shards, self._shard_count,
                                                   self._holder, ttl=self._lease_seconds)
            except Exception as exc:  # the index is away: the leases hold until they lapse
                if not failing:
                    _log.warning("cannot renew the shard leases (%s); trying again every %g s", type(exc).__name__,
                                 self._renew_seconds)
                failing = True
                continue
            if failing:
                _log.info("shard leases renewed again")
                failing = False
            if conflict is not None:
                line = (f"lost the shard leases while the index was away: {self._describe(conflict, self._shard_count)}"
                        "; finishing every recording and exiting so no guild is recorded twice")
                _log.error("%s", line)
                on_lost(line)
                return

    def _describe(self, conflict: ShardConflict, shard_count: int) -> str:
        holder = f"host {conflict.holder.host}, pid {conflict.holder.pid}"
        if conflict.shard_count != shard_count:
            count = "SHARD_COUNT" if self._count_set else f"SHARD_COUNT (not set; Discord's count {shard_count})"
            return (f"{count}: another process ({holder}) runs shard {conflict.shard} of {conflict.shard_count} "
                    f"shards, not {shard_count}; a new SHARD_COUNT needs every process restarted with it")
        setting = "SHARD_IDS" if self._ids_set else "SHARD_IDS (not set, so every shard)"
        return (f"{setting}: shard {conflict.shard} is already run by another process ({holder}); "
                "give each process its own shards")
