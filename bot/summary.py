"""What the bot tells people about recordings: the stop summary, /record status, lists."""

from __future__ import annotations

from typing import Any

from bot.storage import Manifest, Recording
from bot.units import duration, size

__all__ = ["recording_summary", "unfinished_text", "status_text", "recording_line"]


def recording_summary(manifest: Manifest, total_bytes: int, link: str) -> str:
    """The stop message: duration, each speaker's talk time, size, loss, link."""
    length = (manifest.ended_at - manifest.started_at).total_seconds() if manifest.ended_at else 0.0
    lines = [
        f"Recording `{manifest.recording_id}` of **{manifest.channel_name}**: {duration(length)}, "
        f"{len(manifest.speakers)} speaker(s), {size(total_bytes)}.",
    ]
    for speaker in manifest.speakers:
        detail = f"talked {duration(speaker.talk_seconds or 0.0)}"
        if speaker.losses:
            detail += f", {speaker.losses} packet(s) lost and concealed"
        lines.append(f"- {speaker.display_name}: {detail}")
    if not manifest.speakers:
        lines.append("Nobody spoke.")
    lines.append(f"Download (page, players, ZIP, FLAC): {link}")
    return "\n".join(lines)


def unfinished_text(recording_id: str, *, retrying: bool = True) -> str:
    """What people are told about a recording that stopped but could not be finished.

    While the bot runs it keeps trying (``RecordingStore.close_unfinished``) and
    posts the summary once that works; ``retrying`` False is for a bot that is
    shutting down. Its index entry still says "recording", which the next start
    of the bot takes for a crash: it repairs the files and marks the recording
    interrupted (``RecordingStore.recover``). The cause stays in the bot's log:
    it may name paths.
    """
    head = f"Recording `{recording_id}` could not be finished (the error is in the bot's log). Its files are kept: "
    if retrying:
        return head + ("the bot tries again at least once a minute and posts here once it is done; "
                       "if the bot stops first, its next start repairs it.")
    return head + "the next start of the bot repairs it, then `/recordings get` hands it out."


def status_text(channel_name: str, recording_id: str, elapsed: float, names: dict[int, str],
                stats: dict[str, Any]) -> str:
    """The /record status answer."""
    sink = stats["sink"]
    receive = stats.get("receive", {})
    talk = sink["talk_seconds"]
    lines = [f"Recording `{recording_id}` of **{channel_name}** for {duration(elapsed)}."]
    if talk:
        lines.append("Speakers heard:")
        for user_id, seconds in sorted(talk.items(), key=lambda item: -item[1]):
            lines.append(f"- {names.get(user_id, user_id)}: {duration(seconds)}")
    else:
        lines.append("Nobody has spoken yet.")
    undecryptable = sum(v for k, v in receive.items() if k.startswith("dave"))
    lines.append(
        f"Packets: {sink['received']} received, {sink['lost']} lost, {sink['dropped']} dropped "
        f"(queue full), {undecryptable} undecryptable. Disk used: {size(sink['bytes_written'])}. "
        f"Worker lag: {sink['worker_lag'] * 1000:.0f} ms."
    )
    return "\n".join(lines)


def recording_line(recording: Recording) -> str:
    """One line of /recordings list."""
    started = recording.started_at.strftime("%Y-%m-%d %H:%M UTC")
    length = ""
    if recording.ended_at is not None:
        length = f", {duration((recording.ended_at - recording.started_at).total_seconds())}"
    return f"`{recording.id}` {started}, **{recording.channel_name}**{length} ({recording.status})"
