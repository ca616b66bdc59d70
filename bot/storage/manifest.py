"""``manifest.json``: what a recording folder holds, readable without the index."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.storage.names import speaker_filename

__all__ = ["MANIFEST_NAME", "STATUSES", "Manifest", "ManifestError", "Note", "Speaker", "format_time", "parse_time"]

MANIFEST_NAME = "manifest.json"
STATUSES = ("recording", "finished", "interrupted")


class ManifestError(Exception):
    """A manifest file that cannot be read or does not make sense."""


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with a ``Z``, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time` (accepts any ISO-8601 with an offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without a UTC offset: {text!r}")
    return moment.astimezone(UTC)


@dataclasses.dataclass(slots=True)
class Speaker:
    """One speaker's track. ``talk_seconds``/``packets``/``losses`` are None when
    unknown (a recording recovered after a crash)."""

    user_id: int
    display_name: str
    file: str = ""
    talk_seconds: float | None = None
    packets: int | None = None
    losses: int | None = None

    def __post_init__(self) -> None:
        if not self.file:
            self.file = speaker_filename(self.display_name, self.user_id)

    def to_json(self) -> dict[str, Any]:
        """JSON form; ids as strings since JavaScript numbers cannot hold snowflakes."""
        return {
            "user_id": str(self.user_id),
            "display_name": self.display_name,
            "file": self.file,
            "talk_seconds": self.talk_seconds,
            "packets": self.packets,
            "losses": self.losses,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Speaker:
        """Inverse of :meth:`to_json`."""
        return cls(
            user_id=int(data["user_id"]),
            display_name=str(data["display_name"]),
            file=str(data["file"]),
            talk_seconds=None if data.get("talk_seconds") is None else float(data["talk_seconds"]),
            packets=None if data.get("packets") is None else int(data["packets"]),
            losses=None if data.get("losses") is None else int(data["losses"]),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Note:
    """A marker someone put on the recording with ``/record note``: ``at`` seconds
    after the recording's sample 0 (the origin every track is placed from)."""

    at: float
    text: str
    author_id: int
    author_name: str

    def to_json(self) -> dict[str, Any]:
        """JSON form; the id as a string, as the speakers' are."""
        return {"at": self.at, "text": self.text, "author_id": str(self.author_id), "author_name": self.author_name}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Note:
        """Inverse of :meth:`to_json`."""
        return cls(float(data["at"]), str(data["text"]), int(data["author_id"]), str(data["author_name"]))


@dataclasses.dataclass(slots=True)
class Manifest:
    """Everything known about one recording."""

    recording_id: str
    guild_id: int
    guild_name: str
    channel_id: int
    channel_name: str
    started_at: datetime
    ended_at: datetime | None = None
    status: str = "recording"
    sample_rate: int = 48000
    channels: int = 1
    speakers: list[Speaker] = dataclasses.field(default_factory=list)
    #: In timeline order.
    notes: list[Note] = dataclasses.field(default_factory=list)

    def speaker_by_file(self, name: str) -> Speaker | None:
        """The speaker whose track is called ``name``, or None."""
        return next((s for s in self.speakers if s.file == name), None)

    def to_json(self) -> dict[str, Any]:
        """JSON form written to ``manifest.json``."""
        return {
            "format": 1,
            "id": self.recording_id,
            "guild": {"id": str(self.guild_id), "name": self.guild_name},
            "channel": {"id": str(self.channel_id), "name": self.channel_name},
            "started_at": format_time(self.started_at),
            "ended_at": None if self.ended_at is None else format_time(self.ended_at),
            "status": self.status,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "speakers": [s.to_json() for s in self.speakers],
            "notes": [n.to_json() for n in self.notes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_json`; raises :class:`ManifestError` on nonsense."""
        try:
            manifest = cls(
                recording_id=str(data["id"]),
                guild_id=int(data["guild"]["id"]),
                guild_name=str(data["guild"]["name"]),
                channel_id=int(data["channel"]["id"]),
                channel_name=str(data["channel"]["name"]),
                started_at=parse_time(data["started_at"]),
                ended_at=None if data.get("ended_at") is None else parse_time(data["ended_at"]),
                status=str(data["status"]),
                sample_rate=int(data["sample_rate"]),
                channels=int(data["channels"]),
                speakers=[Speaker.from_json(s) for s in data["speakers"]],
                # Manifests written before notes existed have none.
                notes=[Note.from_json(n) for n in data.get("notes", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest: bad or missing field ({exc})") from None
        if manifest.status not in STATUSES:
            raise ManifestError(f"manifest: unknown status {manifest.status!r}")
        return manifest

    def write(self, directory: Path) -> Path:
        """Write ``directory/manifest.json`` atomically (a reader never sees half)."""
        path = directory / MANIFEST_NAME
        tmp = directory / (MANIFEST_NAME + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Read ``directory/manifest.json``; raises :class:`ManifestError` (or
        FileNotFoundError when there is none)."""
        path = directory / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path.name}: not valid JSON ({exc})") from None
        return cls.from_json(data)
