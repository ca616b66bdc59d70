"""The download server's routes.

``/r/<id>?key=<secret>`` is the page; under it ``files/<name>`` (WAV, with HTTP
Range), ``flac/<name>``, ``all.zip``, ``mix.wav`` and, for a recording with
notes, ``labels.txt`` and ``chapters.json``, all with the same key. The page's
player script is ``/player.js``: the same for every recording, it needs no key.
Anything wrong (unknown id, wrong/missing key, expired, still recording, a name
not in the manifest, any path trick) gets the same 404 and nothing else.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import soundfile as sf
from aiohttp import web

from bot.storage import (CHAPTERS_NAME, LABELS_NAME, MARKER_FILES, AsyncRecordingStore, Manifest, ManifestError,
                         Recording, is_recording_id)
from bot.web.activity import load_activity
from bot.web.exports import flac_copy, mixdown_chunks, mixdown_size, zip_chunks
from bot.web.files import servable
from bot.web.page import TrackInfo, render_page
from bot.web.player import PLAYER_SCRIPT
from bot.web.ranges import RangedFileResponse
from bot.web.streaming import SEND_TIMEOUT, stream_chunks

__all__ = ["NOT_FOUND_BODY", "create_app", "download_url"]

_log = logging.getLogger(__name__)

NOT_FOUND_BODY = "Not found.\n"

_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; media-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def download_url(public_url: str, recording: Recording) -> str:
    """The link users get: ``PUBLIC_URL/r/<id>?key=<secret>``."""
    return public_url.rstrip("/") + recording.download_path


def _not_found() -> web.Response:
    return web.Response(status=404, text=NOT_FOUND_BODY, content_type="text/plain")


@web.middleware
async def _uniform_not_found(request: web.Request, handler) -> web.StreamResponse:
    """Every 404/405, ours or aiohttp's (no route), looks the same."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return _not_found()


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Runs just before any response's headers go out, streamed ones included:
    # the key in the URL must not leak through Referer; no type sniffing.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"


#: The chapters' own media type, as the podcast namespace names it.
_MARKER_TYPES = {LABELS_NAME: "text/plain; charset=utf-8", CHAPTERS_NAME: "application/json+chapters"}


async def _player_script(_request: web.Request) -> web.Response:
    """The page's player: static, the same for everyone, so cacheable."""
    return web.Response(text=PLAYER_SCRIPT, content_type="text/javascript", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=3600"})


class _Denied(Exception):
    """Any reason to answer 404."""


def _attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class _Routes:
    """Handlers sharing the store, the export executor, per-file locks and the
    send timeout of streamed exports."""

    __slots__ = ("store", "executor", "locks", "send_timeout")

    # One lock per derived file (and per recording's timeline) so two visitors
    # never compute the same thing twice at once; a few bytes per track served.

    def __init__(self, store: AsyncRecordingStore, executor: ThreadPoolExecutor, send_timeout: float) -> None:
        self.store = store
        self.executor = executor
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.send_timeout = send_timeout

    def _lock(self, *key: str) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    async def _authorize(self, request: web.Request) -> tuple[Recording, Manifest]:
        rid = request.match_info["rid"]
        if not is_recording_id(rid):
            raise _Denied
        # The async store reads in a thread: a store write waiting out a locked index
        # holds the store's lock, and a read on the event loop would freeze the bot meanwhile.
        rec = await self.store.get(rid)
        key = request.query.get("key", "")
        # Compare even when the id is unknown, so timing says nothing either way.
        expected = rec.secret if rec is not None else "x" * 32
        if not hmac.compare_digest(key.encode(), expected.encode()) or rec is None:
            raise _Denied
        if rec.status == "recording" or self.store.is_expired(rec):
            raise _Denied
        if servable(rec.directory, "manifest.json") is None:
            _log.warning("recording %s: manifest.json is not a regular file; refused", rec.id)
            raise _Denied
        try:
            manifest = await self.store.read_manifest(rec)
        except (OSError, ManifestError) as exc:
            _log.warning("recording %s: unreadable manifest: %s", rec.id, exc)
            raise _Denied from None
        return rec, manifest

    async def _track(self, request: web.Request) -> tuple[Recording, Manifest, Path]:
        rec, manifest = await self._authorize(request)
        name = request.match_info["name"]
        # Only names the manifest lists, so "..", slashes or absolute paths never reach the disk.
        if manifest.speaker_by_file(name) is None:
            raise _Denied
        path = servable(rec.directory, name)
        if path is None:
            raise _Denied
        return rec, manifest, path

    @staticmethod
    def _tracks(rec: Recording, manifest: Manifest) -> list[str]:
        """The manifest's track files that exist as regular files (never symlinks)."""
        return [s.file for s in manifest.speakers if servable(rec.directory, s.file) is not None]

    @staticmethod
    def _markers(rec: Recording) -> list[str]:
        """The recording's notes as marker files (label track, chapters), those that exist."""
        return [name for name in MARKER_FILES if servable(rec.directory, name) is not None]

    async def page(self, request: web.Request) -> web.StreamResponse:
        """The HTML page."""
        try:
            rec, manifest = await self._authorize(request)
        except _Denied:
            return _not_found()
        files = self._tracks(rec, manifest)
        loop = asyncio.get_running_loop()
        async with self._lock(rec.id, "activity"):
            activity = await loop.run_in_executor(self.executor, load_activity, rec.directory, files)

        def describe() -> list[TrackInfo]:
            tracks = []
            for speaker in manifest.speakers:
                if speaker.file not in activity:
                    continue
                path = rec.directory / speaker.file
                info = sf.info(str(path))
                act = activity[speaker.file]
                talk = speaker.talk_seconds if speaker.talk_seconds is not None else act.talk_seconds
                tracks.append(TrackInfo(speaker.user_id, speaker.display_name, speaker.file,
                                        path.stat().st_size, info.frames / info.samplerate, talk, act))
            return tracks

        tracks = await asyncio.to_thread(describe)
        html = render_page(manifest, request.query["key"], tracks, self._markers(rec),
                           expires=self.store.expires_at(rec))
        return web.Response(
            text=html, content_type="text/html",
            headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "private, no-store"},
        )

    async def wav(self, request: web.Request) -> web.StreamResponse:
        """One track as WAV; Range requests work (players seek with them)."""
        try:
            _rec, _manifest, path = await self._track(request)
        except _Denied:
            return _not_found()
        headers = {"Content-Type": "audio/wav", "Cache-Control": "private, max-age=3600"}
        if "download" in request.query:
            headers["Content-Disposition"] = _attachment(path.name)
        return RangedFileResponse(path, headers=headers)

    async def flac(self, request: web.Request) -> web.StreamResponse:
        """One track as FLAC, made once and kept next to the WAV."""
        try:
            rec, _manifest, path = await self._track(request)
        except _Denied:
            return _not_found()
        target = path.with_suffix(".flac")
        loop = asyncio.get_running_loop()
        async with self._lock(rec.id, path.name):
            try:
                await loop.run_in_executor(self.executor, flac_copy, path, target)
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                # An unreadable track, or no room for the copy: no FLAC, and no 500 either.
                _log.warning("recording %s: no FLAC of a track: %s", rec.id, type(exc).__name__)
                return _not_found()
        if servable(rec.directory, target.name) is None:
            return _not_found()
        headers = {"Content-Type": "audio/flac", "Cache-Control": "private, max-age=3600"}
        if "download" in request.query:
            headers["Content-Disposition"] = _attachment(target.name)
        return RangedFileResponse(target, headers=headers)

    async def marker(self, request: web.Request) -> web.StreamResponse:
        """The notes as an Audacity label track or as podcast chapters."""
        try:
            rec, _manifest = await self._authorize(request)
        except _Denied:
            return _not_found()
        name = request.match_info["marker"]
        path = servable(rec.directory, name)
        if path is None:
            return _not_found()
        headers = {"Content-Type": _MARKER_TYPES[name], "Cache-Control": "private, max-age=3600"}
        if "download" in request.query:
            headers["Content-Disposition"] = _attachment(name)
        return RangedFileResponse(path, headers=headers)

    async def zip(self, request: web.Request) -> web.StreamResponse:
        """Every track plus the manifest as one stored ZIP, streamed."""
        try:
            rec, manifest = await self._authorize(request)
        except _Denied:
            return _not_found()
        names = self._tracks(rec, manifest)
        names.append("manifest.json")
        names += self._markers(rec)
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": _attachment(f"recording-{rec.id}.zip"),
            "Cache-Control": "private, no-store",
        })
        await response.prepare(request)
        await stream_chunks(request, response, zip_chunks(rec.directory, names), self.executor,
                            send_timeout=self.send_timeout)
        return response

    async def mix(self, request: web.Request) -> web.StreamResponse:
        """All tracks summed into one WAV, streamed with a known length."""
        try:
            rec, manifest = await self._authorize(request)
        except _Denied:
            return _not_found()
        names = self._tracks(rec, manifest)
        rate, channels = manifest.sample_rate, manifest.channels
        size = await asyncio.to_thread(mixdown_size, rec.directory, names, rate, channels)
        response = web.StreamResponse(headers={
            "Content-Type": "audio/wav",
            "Content-Disposition": _attachment(f"recording-{rec.id}-mix.wav"),
            "Cache-Control": "private, no-store",
        })
        response.content_length = size
        await response.prepare(request)
        await stream_chunks(request, response, mixdown_chunks(rec.directory, names, rate, channels), self.executor,
                            send_timeout=self.send_timeout)
        return response


def create_app(
    store: AsyncRecordingStore, *, export_threads: int = 4, send_timeout: float = SEND_TIMEOUT
) -> web.Application:
    """The download server as an aiohttp application. Exports (ZIP, mixdown,
    FLAC, timeline) run on a pool of ``export_threads`` threads, shut down with
    the application; a streamed export whose client takes nothing for
    ``send_timeout`` seconds is cut off."""
    app = web.Application(middlewares=[_uniform_not_found])
    app.on_response_prepare.append(_security_headers)
    executor = ThreadPoolExecutor(max_workers=export_threads, thread_name_prefix="web-export")
    routes = _Routes(store, executor, send_timeout)
    app.router.add_get("/r/{rid}", routes.page)
    app.router.add_get("/r/{rid}/files/{name}", routes.wav)
    app.router.add_get("/r/{rid}/flac/{name}", routes.flac)
    app.router.add_get("/r/{rid}/all.zip", routes.zip, allow_head=False)
    app.router.add_get(r"/r/{rid}/{marker:labels\.txt|chapters\.json}", routes.marker)
    app.router.add_get("/player.js", _player_script)
    app.router.add_get("/r/{rid}/mix.wav", routes.mix, allow_head=False)

    async def shutdown(_app: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shutdown)
    return app
