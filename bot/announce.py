"""What the bot posts in Discord channels about recordings.

The consent notice when a recording starts, the stop summary with its ZIP
when that fits the upload limit, the notices about recordings that could
not be finished, and, after a restart, about recordings a crash cut short.
A post that Discord refuses is logged, never raised: the recording matters
more than the message.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

import discord

from bot.session import StopReason
from bot.storage import MARKER_FILES, AsyncRecordingStore, Manifest, Recording
from bot.summary import plain, recording_summary, unfinished_text, write_failure
from bot.web import download_url
from bot.web.exports import write_zip
from bot.web.files import servable

__all__ = ["Announcer", "RECORDING_NOTICE"]

_log = logging.getLogger(__name__)

#: Attachments are refused above the limit; leave room for the multipart envelope.
_UPLOAD_MARGIN = 64 * 1024
#: Discord's upload limit for a guild that has no boost (and for a channel outside a guild).
_DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

#: Posted in the recorded channel when a recording starts.
RECORDING_NOTICE = ("\N{LARGE RED CIRCLE} This channel is being recorded (one file per speaker). "
                    "`/record optout` keeps your voice out of it.")


class Announcer:
    """Posts about recordings; links point at ``public_url``."""

    __slots__ = ("_store", "_public_url")

    def __init__(self, store: AsyncRecordingStore, public_url: str) -> None:
        self._store = store
        self._public_url = public_url

    def link(self, recording: Recording) -> str:
        """The recording's download page."""
        return download_url(self._public_url, recording)

    async def summary_and_zip(self, manifest: Manifest, upload_limit: int) -> tuple[str, discord.File | None]:
        """The summary text, and the ZIP of all tracks when it fits ``upload_limit``."""
        recording = await self._store.get(manifest.recording_id)
        assert recording is not None
        names = [s.file for s in manifest.speakers]
        total = sum((recording.directory / n).stat().st_size for n in names)
        text = recording_summary(manifest, total, self.link(recording), self._store.expires_at(recording))
        if not names:
            return text, None
        # The notes' label track and chapters ride along (a few KiB: within the margin).
        members = names + [m for m in MARKER_FILES if servable(recording.directory, m) is not None]
        try:
            zipped = await asyncio.to_thread(_zip_if_fits, recording, members, total, upload_limit - _UPLOAD_MARGIN)
        except OSError as exc:  # its temporary file: the link still serves every track
            _log.warning("could not build the ZIP of recording %s to attach: %s", recording.id, exc)
            return text + f"\n(The ZIP could not be attached: {write_failure(exc.errno)}. Use the link.)", None
        if zipped is None:
            return text + "\n(The ZIP is larger than this server's upload limit: use the link.)", None
        return text, discord.File(zipped, filename=f"recording-{recording.id}.zip")

    @staticmethod
    async def send_with_optional_file(send: Callable[..., Awaitable[Any]], text: str,
                                      file: discord.File | None, **kwargs: Any) -> None:
        """Send ``text`` with ``file``; if Discord refuses the upload, send the text alone."""
        if file is None:
            await send(text, **kwargs)
            return
        try:
            await send(text, file=file, **kwargs)
        except discord.HTTPException as exc:
            if exc.status != 413:
                raise
            _log.info("upload refused as too large; sending the link only")
            await send(text + "\n(Discord refused the attachment as too large: use the link.)", **kwargs)

    async def stopped(self, channel: discord.abc.Messageable | None, reason: StopReason, manifest: Manifest) -> None:
        """A recording stopped and was finished: why, its summary and (when it fits) its ZIP."""
        await self._summary(channel, f"Recording stopped: {reason.text}.", manifest)

    async def finished_late(self, channel: discord.abc.Messageable | None, manifest: Manifest) -> None:
        """A recording whose stop had failed is closed now."""
        done = "finished" if manifest.status == "finished" else "repaired and kept as far as it was written"
        await self._summary(channel, f"Recording `{manifest.recording_id}` is {done} now.", manifest)

    async def unfinished(self, channel: discord.abc.Messageable | None, reason: StopReason, recording_id: str,
                         *, retrying: bool) -> None:
        """A recording stopped but could not be finished (see :func:`bot.summary.unfinished_text`)."""
        await self.post(channel, f"Recording stopped: {reason.text}.\n"
                                 f"{unfinished_text(recording_id, retrying=retrying)}")

    async def recovered(self, guild: discord.Guild, recording: Recording) -> None:
        """Tell ``guild`` about a recording the start-up closed: cut by a crash, or left unfinished."""
        channel = guild.get_channel(recording.channel_id) or guild.system_channel
        link = self.link(recording)
        if recording.status == "finished":  # it had stopped; only its index entry was left behind
            text = (f"Recording `{recording.id}` of **{plain(recording.channel_name)}**, which could not be finished "
                    f"before the bot stopped, is finished now: {link}")
        else:
            text = (f"The bot stopped unexpectedly while recording **{plain(recording.channel_name)}**. The recording "
                    f"`{recording.id}` was repaired and kept up to the moment it stopped: {link}")
        await self.post(channel, text)

    async def post(self, channel: object, text: str) -> None:
        """Post ``text`` in ``channel`` when it takes messages; a refusal is logged."""
        if not isinstance(channel, discord.abc.Messageable):
            return
        try:
            await channel.send(text)
        except discord.HTTPException as exc:
            _log.info("could not post in channel %s: %s", getattr(channel, "id", "?"), exc)

    async def _summary(self, channel: discord.abc.Messageable | None, head: str, manifest: Manifest) -> None:
        """Post ``head``, the recording's summary and (when it fits) its ZIP in ``channel``."""
        if channel is None:
            return
        limit = getattr(getattr(channel, "guild", None), "filesize_limit", _DEFAULT_UPLOAD_LIMIT)
        text, file = await self.summary_and_zip(manifest, limit)
        try:
            await self.send_with_optional_file(channel.send, f"{head}\n{text}", file)
        except discord.HTTPException as exc:
            _log.warning("could not announce the end of recording %s: %s", manifest.recording_id, exc)


def _zip_if_fits(recording: Recording, names: list[str], tracks_bytes: int, limit: int) -> IO[bytes] | None:
    """Write the ZIP to an anonymous temporary file; None when it exceeds ``limit``.

    Stored ZIP size is known before writing (tracks plus small headers), so a
    recording far over the limit costs no copy at all.
    """
    if limit <= 0 or tracks_bytes > limit:
        return None
    out = tempfile.TemporaryFile()
    try:
        write_zip(recording.directory, names, out.write)
    except BaseException:
        out.close()  # a full temporary disk: give the space back at once
        raise
    if out.tell() > limit:
        out.close()
        return None
    out.seek(0)
    return out
