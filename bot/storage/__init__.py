"""Where recordings live: one folder per recording under ``RECORDINGS_DIR`` with
a WAV per speaker and ``manifest.json``, indexed in SQLite or PostgreSQL.

Typical use by the bot::

    store = RecordingStore(settings.recordings_dir, settings.database_path, settings.retention_days,
                           database_url=settings.database_url)
    rec = store.create(guild.id, guild.name, channel.id, channel.name)
    # the recording engine writes rec.directory / f"{user_id}.wav"
    store.note_speaker(rec.id, member.id, member.display_name)
    manifest = store.new_manifest(rec)        # then fill talk_seconds/packets/losses
    store.finish(rec.id, manifest)
    link = settings.public_url + rec.download_path

On the event loop, the same calls go through :class:`AsyncRecordingStore`.
What a crash left open (``store.unfinished()``) is closed by :mod:`bot.recovery`.
"""

from bot.storage.asyncstore import AsyncRecordingStore
from bot.storage.disk import free_disk_mb, has_free_space
from bot.storage.guild_settings import StoredGuildSettings
from bot.storage.ids import is_recording_id, new_recording_id, new_secret, normalize_recording_id
from bot.storage.index import IndexUnavailable, Recording, RecordingStore, StorageError
from bot.storage.manifest import MANIFEST_NAME, Manifest, ManifestError, Note, Speaker
from bot.storage.markers import CHAPTERS_NAME, LABELS_NAME, MARKER_FILES
from bot.storage.names import speaker_filename

__all__ = [
    "CHAPTERS_NAME",
    "LABELS_NAME",
    "MANIFEST_NAME",
    "MARKER_FILES",
    "AsyncRecordingStore",
    "IndexUnavailable",
    "Manifest",
    "ManifestError",
    "Note",
    "Recording",
    "RecordingStore",
    "Speaker",
    "StorageError",
    "StoredGuildSettings",
    "free_disk_mb",
    "has_free_space",
    "is_recording_id",
    "new_recording_id",
    "new_secret",
    "normalize_recording_id",
    "speaker_filename",
]
