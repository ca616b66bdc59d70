"""A manifest that lists a track which is no WAV (a zero-byte file a full disk left, listed by a
bot from before that was fixed): the download server never answers 500 for it. The page and the
mixdown serve the readable tracks, the FLAC of the bad one is a plain 404. Real server, real socket."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from bot.storage import AsyncRecordingStore, RecordingStore, Speaker
from bot.web import WebServer, create_app
from tests.bot.conftest import serving
from tests.bot.wavgen import bursts, write_wav
from tests.bot_process.checks import http_get


def _get(url: str) -> tuple[int, bytes]:
    # Encodes on a busy machine may take a while: a longer wait than the process tests'.
    return http_get(url, timeout=60.0)


def test_a_listed_track_that_is_no_wav_never_makes_the_server_fail(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "recordings")
    try:
        rec = store.create(1, "G", 2, "vc")
        good = bursts(440.0, 1.0, [(0.2, 0.8)])
        write_wav(rec.directory / "7.wav", good)
        store.note_speaker(rec.id, 7, "Good")
        final = store.finish(rec.id, store.new_manifest(rec))
        # What an older bot wrote after a full disk: a zero-byte track, listed.
        (rec.directory / "Bad-8.wav").touch()
        dataclasses.replace(final, speakers=[*final.speakers, Speaker(8, "Bad", "Bad-8.wav")]).write(rec.directory)
        rec = store.get(rec.id)
        assert rec is not None
        with serving(WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)) as server:
            base = f"http://127.0.0.1:{server.port}/r/{rec.id}"
            key = f"?key={rec.secret}"
            status, page = _get(base + key)
            assert status == 200 and b"Good" in page and b'data-user="8"' not in page
            status, mix = _get(base + "/mix.wav" + key)
            assert status == 200
            mixed, _ = sf.read(io.BytesIO(mix), dtype="int16")
            np.testing.assert_array_equal(mixed, good)
            assert _get(base + "/all.zip" + key)[0] == 200
            assert _get(base + "/flac/Bad-8.wav" + key)[0] == 404
            assert _get(base + "/flac/good-7.wav" + key)[0] == 200
            # The encoded ZIP leaves the unreadable track out, as the mix does (it was made above).
            status, archive = _get(base + "/all.flac.zip" + key)
            assert status == 200
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                assert sorted(zf.namelist()) == ["good-7.flac", "manifest.json"]
    finally:
        store.close()
