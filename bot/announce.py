"""What the bot posts in Discord channels about recordings.

The consent notice when a recording starts, the stop summary with the best
ZIP that fits the upload limit (WAV, else FLAC, else Ogg Opus), the notices about recordings that could
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

from bot.guild_config import GuildConfig
from bot.session import StopReason
from bot.storage import MARKER_FILES, AsyncRecordingStore, Manifest, Recording
from bot.summary import plain, recording_summary, unfinished_text, write_failure
from bot.web import download_url
from bot.web.encode import FORMATS, Format, track_encodes, track_name
from bot.web.encoder import Encoder
from bot.web.exports import mix_inputs, write_zip, zip_members
from bot.web.files import servable
from bot.web.zipstream import ZipMember, zip_length

__all__ = ["Announcer", "RECORDING_NOTICE"]

_log = logging.getLogger(__name__)

#: Attachments are refused above the limit; leave room for the multipart envelope.
_UPLOAD_MARGIN = 64 * 1024
#: Discord's upload limit for a guild that has no boost (and for a channel outside a guild).
_DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

#: Which ZIPs the stop summary tries, best first, by the server's default download format:
#: never one of higher quality than the server asked for, and WAV, FLAC, Ogg Opus in that order.
_ATTACH_ORDER = {"wav": ("wav", "flac", "ogg"), "flac": ("flac", "ogg"), "ogg": ("ogg",), "mp3": ("mp3",)}
#: The least an encoded track can plausibly take per second of talk, as a share of
#: its WAV bytes (FLAC keeps speech at about half) or in bytes (Opus and MP3 at
#: 24 kbit/s and more): a ZIP over the limit even then is not worth encoding for.
_FLAC_LEAST_SHARE = 0.25
_LEAST_BYTES_PER_TALK_SECOND = {"ogg": 2000.0, "mp3": 3000.0}

#: Posted in the recorded channel when a recording starts.
RECORDING_NOTICE = ("\N{LARGE RED CIRCLE} This channel is being recorded (one file per speaker). "
                    "`/record optout` keeps your voice out of it.")


class Announcer:
    """Posts about recordings; links point at ``public_url``."""

    __slots__ = ("_store", "_public_url", "_encoder", "_config")

    def __init__(self, store: AsyncRecordingStore, public_url: str, encoder: Encoder, config: GuildConfig) -> None:
        self._store = store
        self._public_url = public_url
        self._encoder = encoder
        self._config = config

    def link(self, recording: Recording) -> str:
        """The recording's download page."""
        return download_url(self._public_url, recording)

    async def summary_and_zip(self, manifest: Manifest, upload_limit: int) -> tuple[str, discord.File | None]:
        """The summary text, and (unless the server chose not to attach files) the best
        ZIP of all tracks that fits ``upload_limit``: tried in the order
        :data:`_ATTACH_ORDER` gives for the server's default download format. The text
        says which was attached; the link is always in it."""
        chosen = await self._config.get(manifest.guild_id)
        default_format, attach = chosen.download_format, chosen.attach_files
        recording = await self._store.get(manifest.recording_id)
        assert recording is not None
        names = [s.file for s in manifest.speakers]
        total = sum((recording.directory / n).stat().st_size for n in names)
        text = recording_summary(manifest, total, self.link(recording), self._store.expires_at(recording))
        if not names or not attach:
            return text, None
        limit = upload_limit - _UPLOAD_MARGIN
        talk = sum(s.talk_seconds or 0.0 for s in manifest.speakers)
        wav_per_second = 2 * manifest.sample_rate * manifest.channels
        least = {"flac": _FLAC_LEAST_SHARE * wav_per_second, **_LEAST_BYTES_PER_TALK_SECOND}
        for fmt in (FORMATS[name] for name in _ATTACH_ORDER.get(default_format, _ATTACH_ORDER["wav"])):
            if talk * least.get(fmt.name, 0.0) > limit:
                continue
            try:
                zipped = await self._zip_if_fits(recording, manifest, names, fmt, limit)
            except OSError as exc:  # its temporary file: the link still serves every track
                _log.warning("could not build the ZIP of recording %s to attach: %s", recording.id, exc)
                return text + f"\n(The ZIP could not be attached: {write_failure(exc.errno)}. Use the link.)", None
            if zipped is not None:
                suffix = "" if fmt.name == "wav" else f"-{fmt.name}"
                return (text + f"\n(Attached: every track as {fmt.label}, in a ZIP.)",
                        discord.File(zipped, filename=f"recording-{recording.id}{suffix}.zip"))
        return text + "\n(The ZIP is larger than this server's upload limit: use the link.)", None

    async def _zip_if_fits(self, recording: Recording, manifest: Manifest, names: list[str], fmt: Format,
                           limit: int) -> IO[bytes] | None:
        """The ZIP of every track in ``fmt`` in an anonymous temporary file, or None when
        it is larger than ``limit``. Encoded tracks are made on the shared encoder (and
        kept for the download page); a stored ZIP's size is known before it is written,
        so one over the limit costs no copy."""
        if fmt.name != "wav":  # an unreadable track (a headerless one) cannot be encoded: left out
            readable = await asyncio.to_thread(mix_inputs, recording.directory, names, manifest.sample_rate,
                                               manifest.channels)
            names = [p.name for p in readable]
        for job in self._encoder.missing(track_encodes(recording.directory, names, fmt)):
            await asyncio.wrap_future(job.future)
        files = {track_name(n, fmt): n if fmt.name == "wav" else track_name(n, fmt) for n in names}
        # The notes' label track and chapters ride along (a few KiB: within the margin).
        files.update({m: m for m in MARKER_FILES if servable(recording.directory, m) is not None})
        members = await asyncio.to_thread(zip_members, recording.directory, files)
        if zip_length(members) > limit:
            return None
        return await asyncio.to_thread(_write_zip, members)

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

    async def recovered(self, channel: object, recording: Recording) -> None:
        """Tell ``channel`` about a recording the start-up closed: cut by a crash, or left
        unfinished (see :func:`bot.resume.report_channel` for which channel)."""
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
        """Post ``head``, the recording's summary and (when one fits) a ZIP in ``channel``."""
        if channel is None:
            return
        limit = getattr(getattr(channel, "guild", None), "filesize_limit", _DEFAULT_UPLOAD_LIMIT)
        text, file = await self.summary_and_zip(manifest, limit)
        try:
            await self.send_with_optional_file(channel.send, f"{head}\n{text}", file)
        except discord.HTTPException as exc:
            _log.warning("could not announce the end of recording %s: %s", manifest.recording_id, exc)


def _write_zip(members: list[ZipMember]) -> IO[bytes]:
    """The stored ZIP of ``members`` in an anonymous temporary file, read from its start."""
    out = tempfile.TemporaryFile()
    try:
        write_zip(members, out.write)
    except BaseException:
        out.close()  # a full temporary disk: give the space back at once
        raise
    out.seek(0)
    return out
