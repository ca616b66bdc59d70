"""The recording engine: per-user, time-aligned WAV recording of Opus voice packets.

Knows nothing of Discord: the bot hands it ``(user_id, VoicePacket)`` pairs.
"""

from .packet import VoicePacket
from .sink import AudioSink
from .stats import EngineStats, RecordingFailure, UserStats
from .wavfile import RepairReport, repair_directory, repair_wav
from .worker import WorkerPool

__all__ = [
    "AudioSink", "VoicePacket", "WorkerPool", "EngineStats", "UserStats", "RecordingFailure",
    "RepairReport", "repair_wav", "repair_directory",
]
