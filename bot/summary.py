"""What the bot tells people about recordings: the stop summary, /record status, lists."""

from __future__ import annotations

import errno
from datetime import datetime

from discord.utils import escape_markdown, escape_mentions

from bot.storage import Manifest, Recording
from bot.units import clock, duration, moment, size
from bot.voice.stats import RecordingStats

__all__ = ["SUMMARY_NOTES", "plain", "write_failure", "started_text", "recording_summary", "unfinished_text",
           "status_text", "recording_line"]


#: Notes the stop summary lists (the rest are on the page and in the files), and
#: how much of each it shows: a Discord message holds 2000 characters.
SUMMARY_NOTES = 5
_SUMMARY_NOTE_CHARS = 100


def plain(name: str) -> str:
    """A name members chose (display name, channel name) as literal text in a Discord
    message: no markdown, masked link or mention of theirs takes effect."""
    return escape_markdown(escape_mentions(name))


def write_failure(code: int | None) -> str:
    """Why writing failed, for the channel: the cause, never the file's path (the log has it)."""
    if code == errno.ENOSPC:
        return "the bot's disk is full"
    if code == errno.EFBIG:
        return "a file reached the size limit of the bot's system"
    return "the bot could not write to its disk"


def started_text(channel_mention: str, recording_id: str, who_may_stop: str, max_hours: float) -> str:
    """What ``/record start`` (and an autorecording) says once recording runs."""
    return (
        f"\N{LARGE RED CIRCLE} Recording {channel_mention} (recording `{recording_id}`): "
        f"every speaker is saved to their own audio file.\n"
        f"Stop: `/record stop` ({who_may_stop}). "
        f"Don't want to be recorded? `/record optout` (undo with `/record optin`).\n"
        f"It stops by itself when the channel stays empty, after "
        f"{max_hours:g} h, or if disk space runs low."
    )


def recording_summary(manifest: Manifest, total_bytes: int, link: str, expires: datetime | None) -> str:
    """The stop message: duration, each speaker's talk time, size, loss, link and until when it works."""
    length = (manifest.ended_at - manifest.started_at).total_seconds() if manifest.ended_at else 0.0
    lines = [
        f"Recording `{manifest.recording_id}` of **{plain(manifest.channel_name)}**: {duration(length)}, "
        f"{len(manifest.speakers)} speaker(s), {size(total_bytes)}.",
    ]
    for speaker in manifest.speakers:
        detail = f"talked {duration(speaker.talk_seconds or 0.0)}"
        if speaker.losses:
            detail += f", {speaker.losses} packet(s) lost and concealed"
        lines.append(f"- {plain(speaker.display_name)}: {detail}")
    if not manifest.speakers:
        lines.append("Nobody spoke.")
    lines += _notes_lines(manifest)
    lines.append(f"Download (page, players, ZIP, FLAC): {link}")
    if expires is not None:
        lines.append(f"The recording and its link are kept until {moment(expires)}.")
    return "\n".join(lines)


def _notes_lines(manifest: Manifest) -> list[str]:
    """The summary's notes: the first few, each shortened, then how many more."""
    if not manifest.notes:
        return []
    lines = [f"Notes ({len(manifest.notes)}; also as an Audacity label track and podcast chapters "
             f"on the page and in the ZIP):"]
    for note in manifest.notes[:SUMMARY_NOTES]:
        text = note.text if len(note.text) <= _SUMMARY_NOTE_CHARS else note.text[:_SUMMARY_NOTE_CHARS - 1] + "…"
        lines.append(f"- {clock(note.at)} {plain(text)} ({plain(note.author_name)})")
    if len(manifest.notes) > SUMMARY_NOTES:
        lines.append(f"... and {len(manifest.notes) - SUMMARY_NOTES} more.")
    return lines


def unfinished_text(recording_id: str, *, retrying: bool = True) -> str:
    """What people are told about a recording that stopped but could not be finished.

    While the bot runs it keeps trying (``bot.registry``) and
    posts the summary once that works; ``retrying`` False is for a bot that is
    shutting down. Its index entry still says "recording", which the next start
    of the bot takes for a crash: it repairs the files and marks the recording
    interrupted (``bot.recovery.examine``), unless it resumes it. The cause stays in the bot's log:
    it may name paths.
    """
    head = f"Recording `{recording_id}` could not be finished (the error is in the bot's log). Its files are kept: "
    if retrying:
        return head + ("the bot tries again at least once a minute and posts here once it is done; "
                       "if the bot stops first, its next start repairs it.")
    return head + "the next start of the bot repairs it, then `/recordings get` hands it out."


def status_text(channel_name: str, recording_id: str, elapsed: float, names: dict[int, str],
                stats: RecordingStats) -> str:
    """The /record status answer."""
    sink = stats.engine
    talk = {user_id: user.talk_seconds for user_id, user in sink.per_user.items()}
    lines = [f"Recording `{recording_id}` of **{plain(channel_name)}** for {duration(elapsed)}."]
    if talk:
        lines.append("Speakers heard:")
        for user_id, seconds in sorted(talk.items(), key=lambda item: -item[1]):
            lines.append(f"- {plain(names.get(user_id, str(user_id)))}: {duration(seconds)}")
    else:
        lines.append("Nobody has spoken yet.")
    undecryptable = sum(stats.receive.dave_failures.values())
    lines.append(
        f"Packets: {sink.received} received, {sink.lost} lost, {sink.dropped} dropped "
        f"(queue full), {undecryptable} undecryptable. Disk used: {size(sink.bytes_written)}. "
        f"Worker lag: {sink.worker_lag * 1000:.0f} ms."
    )
    return "\n".join(lines)


def recording_line(recording: Recording) -> str:
    """One line of /recordings list."""
    started = moment(recording.started_at)
    length = ""
    if recording.ended_at is not None:
        length = f", {duration((recording.ended_at - recording.started_at).total_seconds())}"
    return f"`{recording.id}` {started}, **{plain(recording.channel_name)}**{length} ({recording.status})"



def suspended_text(recording_id: str) -> str:
    """What the channel is told when a shutdown pauses its recording for a restart."""
    return (f"Recording `{recording_id}` is paused: the bot is restarting. When it is back it rejoins and "
            "continues the same recording (the time away stays silent), unless nobody is left in the "
            "channel: then it finishes the recording and posts its summary.")


def resumed_text(recording_id: str, gap_start: datetime, gap_end: datetime) -> str:
    """What the channel is told when a recording goes on after a restart of the bot: how much is missing."""
    missing = max(0.0, (gap_end - gap_start).total_seconds())
    span = f"{gap_start:%H:%M:%S}\N{EN DASH}{gap_end:%H:%M:%S} UTC"
    return (f"\N{LARGE RED CIRCLE} Recording `{recording_id}` resumed after a restart of the bot; "
            f"{duration(missing)} are missing ({span}), silent in every track. This channel is being "
            "recorded again; `/record optout` keeps your voice out of it.")
