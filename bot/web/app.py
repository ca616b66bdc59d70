"""The download server's routes.

``/r/<id>?key=<secret>`` is the page; under it ``files/<name>`` (WAV, with HTTP
Range), ``<format>/<name>`` (one track in a format of :data:`bot.web.encode.FORMATS`),
``all.zip`` / ``all.<format>.zip`` (every track) and ``mix.<format>`` (the
mixdown) and, for a recording with notes, ``labels.txt`` and ``chapters.json``,
all with the same key. The page's player script is ``/player.js``: the same for
every recording, it needs no key. Anything wrong (unknown id, wrong/missing key,
expired, still recording, a name not in the manifest, any path trick) gets the
same 404 and nothing else; only a visitor holding the key is told that a format
name is unknown.

A recording whose folder is gone (its files are in the object store, see
:mod:`bot.offload`) is served from the store: the page from local copies of its
small files (:mod:`bot.web.objectcache`), each WAV streamed through with its
Range (:func:`bot.web.objects.object_response`), and every encoded format,
ZIP and mixdown from copies of its tracks fetched into the cache directory
first, then made exactly as for a local recording. As long as the folder is
there (an upload not yet verified, or ``KEEP_LOCAL_COPY``), it serves.

Encoded downloads are files made once by :class:`bot.web.encoder.Encoder` and
then served like the tracks (Content-Length, Range). One that is not ready
within :data:`READY_WAIT` seconds answers 202 with a page that shows the
progress and reloads itself until the file is there; the job goes on
meanwhile, shared with every other request for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import soundfile as sf
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from bot.objects import ObjectMissing, ObjectStoreError
from bot.storage import (
    CHAPTERS_NAME,
    LABELS_NAME,
    MANIFEST_NAME,
    MARKER_FILES,
    AsyncRecordingStore,
    Manifest,
    ManifestError,
    Recording,
    is_recording_id,
)
from bot.web.activity import ACTIVITY_NAME, load_activity, stored_activity
from bot.web.encode import (
    FORMATS,
    Format,
    Progress,
    Wanted,
    encode_mix,
    format_named,
    fresh,
    mix_name,
    track_encodes,
    track_name,
)
from bot.web.encoder import Encoder
from bot.web.exports import Chunks, mix_inputs, mixdown_chunks, mixdown_size, zip_chunks, zip_members
from bot.web.files import servable
from bot.web.objectcache import copy_object, copy_small_files
from bot.web.objects import STORE_UNAVAILABLE_BODY, object_response
from bot.web.page import DownloadSizes, TrackInfo, render_page, render_preparing
from bot.web.player import PLAYER_SCRIPT
from bot.web.ranges import RangedFileResponse
from bot.web.streaming import SEND_TIMEOUT, stream_chunks

if TYPE_CHECKING:
    from bot.objects import ObjectStore

__all__ = ["NOT_FOUND_BODY", "READY_WAIT", "UNKNOWN_FORMAT_BODY", "create_app", "download_url"]

_log = logging.getLogger(__name__)

NOT_FOUND_BODY = "Not found.\n"
UNKNOWN_FORMAT_BODY = f"Not found: there is no such format here; the formats are {', '.join(FORMATS)}.\n"
_FORMAT_WORD = re.compile(r"[a-z0-9]{1,16}", re.ASCII | re.IGNORECASE)
#: Seconds a request for an encoded file waits for its encode before answering
#: with the progress page instead.
READY_WAIT = 1.0

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


class _UnknownFormat(Exception):
    """An authorized request names a format there is none of."""


class _Preparing(Exception):
    """The file is being encoded; ``progress`` of it is done."""

    def __init__(self, progress: float) -> None:
        super().__init__(progress)
        self.progress = progress


def _attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class _Routes:
    """Handlers sharing the store, the export executor, the encoder, per-file
    locks and the send timeout of streamed exports."""

    __slots__ = ("store", "objects", "executor", "encoder", "locks", "send_timeout", "ready_wait")

    # One lock per recording's timeline so two visitors never compute it twice at
    # once; encodes are shared by the encoder itself.

    def __init__(self, store: AsyncRecordingStore, objects: ObjectStore | None, executor: ThreadPoolExecutor,
                 encoder: Encoder, send_timeout: float, ready_wait: float) -> None:
        self.store = store
        self.objects = objects
        self.executor = executor
        self.encoder = encoder
        self.locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self.send_timeout = send_timeout
        self.ready_wait = ready_wait

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
        if servable(rec.directory, MANIFEST_NAME) is None and rec.stored_prefix is not None:
            rec = await self._from_store(request, rec)
        if servable(rec.directory, MANIFEST_NAME) is None:
            _log.warning("recording %s: manifest.json is not a regular file; refused", rec.id)
            raise _Denied
        try:
            manifest = await self.store.read_manifest(rec)
        except (OSError, ManifestError) as exc:
            _log.warning("recording %s: unreadable manifest: %s", rec.id, exc)
            raise _Denied from None
        return rec, manifest

    async def _from_store(self, request: web.Request, rec: Recording) -> Recording:
        """``rec`` as served from the object store: its directory the cache of its small files."""
        if self.objects is None or rec.stored_prefix is None:
            _log.warning("recording %s is in the object store, but STORAGE_URL is not set here", rec.id)
            raise _Denied
        cache = self.store.store.cache_directory(rec)
        async with self._lock(rec.id, "small files"):
            try:
                found = await asyncio.get_running_loop().run_in_executor(
                    self.executor, copy_small_files, self.objects, rec.stored_prefix, cache,
                    (ACTIVITY_NAME, *MARKER_FILES), MANIFEST_NAME)
            except ObjectStoreError as exc:
                _log.warning("recording %s: its page's files did not come from the object store: %s", rec.id, exc)
                raise _Denied from None
        if not found:
            _log.warning("recording %s: the object store has no manifest under %s", rec.id, rec.stored_prefix)
            raise _Denied
        request["stored"] = True
        return dataclasses.replace(rec, directory=cache)

    async def _fetch_tracks(self, request: web.Request, rec: Recording, names: list[str]) -> None:
        """For a recording served from the store: copy the named tracks into its cache (once)."""
        if not request.get("stored"):
            return
        assert self.objects is not None and rec.stored_prefix is not None
        objects, prefix = self.objects, rec.stored_prefix
        loop = asyncio.get_running_loop()
        for name in names:
            async with self._lock(rec.id, "track", name):
                try:
                    await loop.run_in_executor(self.executor, copy_object, objects, prefix + name,
                                               rec.directory / name)
                except ObjectStoreError as exc:
                    _log.warning("recording %s: %s did not come from the object store: %s", rec.id, name, exc)
                    raise _Denied from None

    async def _stored_wav(self, request: web.Request, rec: Recording, name: str) -> web.StreamResponse:
        """A track of a recording in the object store, streamed through with its Range."""
        assert self.objects is not None and rec.stored_prefix is not None
        headers = {"Content-Type": FORMATS["wav"].mime, "Cache-Control": "private, max-age=3600"}
        if "download" in request.query:
            headers["Content-Disposition"] = _attachment(name)
        try:
            return await object_response(request, self.objects, rec.stored_prefix + name, headers=headers,
                                         executor=self.executor, send_timeout=self.send_timeout)
        except ObjectMissing:
            return _not_found()

    @staticmethod
    def _format(request: web.Request) -> Format:
        name = request.match_info.get("fmt", "wav")
        fmt = format_named(name)
        if fmt is None:
            # A word is a format someone mistyped: say so. Anything else is a path trick,
            # answered like every other (the same 404 whatever lies behind it).
            raise _UnknownFormat if _FORMAT_WORD.fullmatch(name) else _Denied
        return fmt

    async def _track(self, request: web.Request) -> tuple[Recording, Manifest, Path]:
        """The recording, its manifest and the requested track's path (for a recording in
        the object store: where its copy goes in the cache, see :meth:`_fetch_tracks`)."""
        rec, manifest = await self._authorize(request)
        name = request.match_info["name"]
        # Only names the manifest lists, so "..", slashes or absolute paths never reach the disk.
        if manifest.speaker_by_file(name) is None:
            raise _Denied
        if request.get("stored"):
            return rec, manifest, rec.directory / name
        path = servable(rec.directory, name)
        if path is None:
            raise _Denied
        return rec, manifest, path

    async def _every_track(self, request: web.Request) -> tuple[Recording, Manifest, Format, list[str]]:
        """For a download made of every track (ZIP, mixdown): the recording, its manifest,
        the format asked for, and the manifest's tracks that exist (for a stored recording,
        copied into its cache first). Raises _Denied or _UnknownFormat."""
        rec, manifest = await self._authorize(request)
        fmt = self._format(request)
        await self._fetch_tracks(request, rec, [s.file for s in manifest.speakers])
        return rec, manifest, fmt, self._tracks(rec, manifest)

    @staticmethod
    def _tracks(rec: Recording, manifest: Manifest) -> list[str]:
        """The manifest's track files that exist as regular files (never symlinks)."""
        return [s.file for s in manifest.speakers if servable(rec.directory, s.file) is not None]

    @staticmethod
    def _markers(rec: Recording) -> list[str]:
        """The recording's notes as marker files (label track, chapters), those that exist."""
        return [name for name in MARKER_FILES if servable(rec.directory, name) is not None]

    async def _made(self, wanted: list[Wanted]) -> None:
        """Make sure every target of ``wanted`` (target, its sources, how to encode it) is
        made and fresh. Raises _Preparing when that takes longer than ``ready_wait``,
        OSError or libsndfile's error when an encode failed."""
        jobs = self.encoder.missing(wanted)
        if not jobs:
            return
        waits = [asyncio.wrap_future(j.future) for j in jobs]
        _done, pending = await asyncio.wait(waits, timeout=self.ready_wait)
        if pending:
            for wait in pending:  # its outcome is the next request's business (the encoder logs a failure)
                wait.add_done_callback(lambda w: w.cancelled() or w.exception())
            progress = (len(wanted) - len(jobs) + sum(j.progress for j in jobs)) / len(wanted)
            raise _Preparing(progress)
        errors = [e for e in (w.exception() for w in waits) if e is not None]
        if errors:
            raise errors[0]

    async def _serve_made(self, request: web.Request, rec: Recording, fmt: Format, what: str,
                          wanted: list[Wanted],
                          respond: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """``respond()`` once ``wanted`` is made; the progress page meanwhile; 404 when it cannot be made."""
        try:
            await self._made(wanted)
        except _Preparing as preparing:
            html = render_preparing(f"{what} as {fmt.label}", preparing.progress)
            return web.Response(status=202, text=html, content_type="text/html", headers={
                "Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-store",
                "Refresh": "2"})
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            # An unreadable track, or no room for the copy: no file, and no 500 either.
            _log.warning("recording %s: no %s of %s: %s", rec.id, fmt.label, what, type(exc).__name__)
            return _not_found()
        return await respond()

    async def page(self, request: web.Request) -> web.StreamResponse:
        """The HTML page."""
        try:
            rec, manifest = await self._authorize(request)
        except _Denied:
            return _not_found()
        if request.get("stored"):
            return await self._stored_page(request, rec, manifest)
        files = self._tracks(rec, manifest)
        loop = asyncio.get_running_loop()
        async with self._lock(rec.id, "activity"):
            activity = await loop.run_in_executor(self.executor, load_activity, rec.directory, files)

        def describe() -> tuple[list[TrackInfo], DownloadSizes]:
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
            return tracks, _download_sizes(rec, manifest, [t.file for t in tracks])

        tracks, sizes = await asyncio.to_thread(describe)
        html = render_page(manifest, request.query["key"], tracks, self._markers(rec), sizes,
                           expires=self.store.expires_at(rec))
        return web.Response(
            text=html, content_type="text/html",
            headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "private, no-store"},
        )

    async def _stored_page(self, request: web.Request, rec: Recording, manifest: Manifest) -> web.StreamResponse:
        """The page of a recording in the object store, from its cached small files and the
        tracks' sizes (a HEAD each); sizes of what is not made yet are unknown, as for local ones."""
        assert self.objects is not None and rec.stored_prefix is not None
        objects, prefix = self.objects, rec.stored_prefix

        def describe() -> tuple[list[TrackInfo], DownloadSizes]:
            files = [s.file for s in manifest.speakers]
            activity = stored_activity(rec.directory, files)
            tracks = []
            for speaker in manifest.speakers:
                act = activity.get(speaker.file)
                info = objects.stat(prefix + speaker.file) if act is not None else None
                if act is None or info is None:
                    continue
                talk = speaker.talk_seconds if speaker.talk_seconds is not None else act.talk_seconds
                tracks.append(TrackInfo(speaker.user_id, speaker.display_name, speaker.file, info.size,
                                        act.frames / manifest.sample_rate, talk, act))
            unknown: dict[str, int | None] = {f.name: None for f in FORMATS.values()}
            per_track = {t.file: {**unknown, "wav": t.size} for t in tracks}
            return tracks, DownloadSizes(dict(unknown), dict(unknown), per_track)

        try:
            tracks, sizes = await asyncio.get_running_loop().run_in_executor(self.executor, describe)
        except ObjectStoreError as exc:
            _log.warning("recording %s: page not made, the object store failed: %s", rec.id, exc)
            return web.Response(status=503, text=STORE_UNAVAILABLE_BODY, content_type="text/plain",
                                headers={"Retry-After": "60", "Cache-Control": "no-store"})
        html = render_page(manifest, request.query["key"], tracks, self._markers(rec), sizes,
                           expires=self.store.expires_at(rec))
        return web.Response(
            text=html, content_type="text/html",
            headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "private, no-store"},
        )

    async def wav(self, request: web.Request) -> web.StreamResponse:
        """One track as WAV; Range requests work (players seek with them)."""
        try:
            rec, _manifest, path = await self._track(request)
        except _Denied:
            return _not_found()
        if request.get("stored"):
            return await self._stored_wav(request, rec, path.name)
        return _file_response(request, path, FORMATS["wav"], path.name)

    async def track(self, request: web.Request) -> web.StreamResponse:
        """One track in any format; an encoded one is made once and kept next to the WAV."""
        try:
            rec, _manifest, path = await self._track(request)
            fmt = self._format(request)
            if fmt.name != "wav" and request.get("stored"):
                await self._fetch_tracks(request, rec, [path.name])  # the encoder reads a file
        except _Denied:
            return _not_found()
        except _UnknownFormat:
            return _unknown_format()
        if fmt.name == "wav":
            if request.get("stored"):
                return await self._stored_wav(request, rec, path.name)
            return _file_response(request, path, fmt, path.name)
        target = rec.directory / track_name(path.name, fmt)

        async def respond() -> web.StreamResponse:
            if servable(rec.directory, target.name) is None:
                return _not_found()
            return _file_response(request, target, fmt, target.name)

        return await self._serve_made(request, rec, fmt, "this track", track_encodes(rec.directory, [path.name], fmt),
                                      respond)

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
        """Every track in one format plus the manifest, as one stored ZIP with a
        Content-Length, streamed. Encoded tracks are made first (and kept)."""
        try:
            rec, manifest, fmt, tracks = await self._every_track(request)
        except _Denied:
            return _not_found()
        except _UnknownFormat:
            return _unknown_format()
        if fmt.name != "wav":  # a track libsndfile cannot read (a headerless one) stays out, as from the mix
            readable = await asyncio.to_thread(mix_inputs, rec.directory, tracks, manifest.sample_rate,
                                               manifest.channels)
            tracks = [p.name for p in readable]
        files = {track_name(t, fmt): t if fmt.name == "wav" else track_name(t, fmt) for t in tracks}
        wanted = track_encodes(rec.directory, tracks, fmt)
        files["manifest.json"] = "manifest.json"
        files.update({name: name for name in self._markers(rec)})

        async def respond() -> web.StreamResponse:
            try:
                members = await asyncio.to_thread(zip_members, rec.directory, files)
            except OSError as exc:
                _log.warning("recording %s: a file of the %s ZIP is gone: %s", rec.id, fmt.label, type(exc).__name__)
                return _not_found()
            length, chunks = zip_chunks(members)
            suffix = "" if fmt.name == "wav" else f"-{fmt.name}"
            return await self._stream(request, "application/zip", f"recording-{rec.id}{suffix}.zip", length, chunks)

        return await self._serve_made(request, rec, fmt, "all tracks", wanted, respond)

    async def mix(self, request: web.Request) -> web.StreamResponse:
        """All tracks summed into one file: WAV streamed as it is mixed, with a
        known length; other formats encoded once and kept."""
        try:
            rec, manifest, fmt, names = await self._every_track(request)
        except _Denied:
            return _not_found()
        except _UnknownFormat:
            return _unknown_format()
        rate, channels = manifest.sample_rate, manifest.channels
        if fmt.name != "wav":
            target = rec.directory / mix_name(fmt)

            async def respond() -> web.StreamResponse:
                if servable(rec.directory, target.name) is None:
                    return _not_found()
                return _file_response(request, target, fmt, f"recording-{rec.id}-mix.{fmt.extension}")

            def encode(out: Path, progress: Progress) -> None:
                encode_mix(rec.directory, names, rate, channels, out, fmt, progress)

            return await self._serve_made(request, rec, fmt, "the mixdown", [
                (target, [rec.directory / n for n in names], encode)], respond)
        size = await asyncio.to_thread(mixdown_size, rec.directory, names, rate, channels)
        return await self._stream(request, "audio/wav", f"recording-{rec.id}-mix.wav", size,
                                  mixdown_chunks(rec.directory, names, rate, channels))

    async def _stream(self, request: web.Request, content_type: str, filename: str, length: int,
                      chunks: Chunks) -> web.StreamResponse:
        """A download of ``length`` bytes made as it is sent, read from ``chunks`` on the export threads."""
        response = web.StreamResponse(headers={
            "Content-Type": content_type,
            "Content-Disposition": _attachment(filename),
            "Cache-Control": "private, no-store",
        })
        response.content_length = length
        await response.prepare(request)
        await stream_chunks(request, response, chunks, self.executor, send_timeout=self.send_timeout)
        return response


def _unknown_format() -> web.Response:
    return web.Response(status=404, text=UNKNOWN_FORMAT_BODY, content_type="text/plain")


def _file_response(request: web.Request, path: Path, fmt: Format, download_name: str) -> web.StreamResponse:
    headers = {"Content-Type": fmt.mime, "Cache-Control": "private, max-age=3600"}
    if "download" in request.query:
        headers["Content-Disposition"] = _attachment(download_name)
    return RangedFileResponse(path, headers=headers)


def _size_if_fresh(path: Path, sources: list[Path]) -> int | None:
    return path.stat().st_size if fresh(path, sources) else None


def _download_sizes(rec: Recording, manifest: Manifest, tracks: list[str]) -> DownloadSizes:
    """What each download weighs, where that is known without encoding anything:
    WAV always, encoded formats once made."""
    directory = rec.directory
    paths = [directory / t for t in tracks]
    per_track: dict[str, dict[str, int | None]] = {}
    for track, path in zip(tracks, paths, strict=True):
        per_track[track] = {f.name: path.stat().st_size if f.name == "wav" else
                            _size_if_fresh(directory / track_name(track, f), [path]) for f in FORMATS.values()}
    readable = [p.name for p in mix_inputs(directory, tracks, manifest.sample_rate, manifest.channels)]
    everything: dict[str, int | None] = {}
    for f in FORMATS.values():
        in_zip = tracks if f.name == "wav" else readable
        try:
            files = {track_name(t, f): t if f.name == "wav" else track_name(t, f) for t in in_zip}
            if f.name != "wav" and any(per_track[t][f.name] is None for t in in_zip):
                raise FileNotFoundError
            files["manifest.json"] = "manifest.json"
            everything[f.name] = zip_chunks(zip_members(directory, files))[0]
        except OSError:
            everything[f.name] = None
    mix = {f.name: (mixdown_size(directory, tracks, manifest.sample_rate, manifest.channels) if f.name == "wav"
                    else _size_if_fresh(directory / mix_name(f), paths)) for f in FORMATS.values()}
    return DownloadSizes(everything, mix, per_track)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _counting(served: Counter, kind: str, handler: Handler) -> Handler:
    """``handler``, counting each answer it gave in full or in part (200, 206) as one ``kind`` served."""
    child = served.labels(kind=kind)

    async def counted(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        if response.status in (200, 206):
            child.inc()
        return response

    return counted


def create_app(
    store: AsyncRecordingStore, *, export_threads: int = 4, send_timeout: float = SEND_TIMEOUT,
    encoder: Encoder | None = None, ready_wait: float = READY_WAIT, metrics: CollectorRegistry | None = None,
    objects: ObjectStore | None = None,
) -> web.Application:
    """The download server as an aiohttp application. Exports (ZIP, mixdown,
    timeline) run on a pool of ``export_threads`` threads, shut down with the
    application; encodes on ``encoder`` (the bot shares one with its stop
    summaries; without one the app makes and shuts down its own); a streamed
    export whose client takes nothing for ``send_timeout`` seconds is cut off.
    What it serves is counted in ``metrics`` (``voice_recorder_downloads_total``
    by kind) when given. ``objects`` serves the recordings whose folder went to the
    object store."""
    app = web.Application(middlewares=[_uniform_not_found])
    app.on_response_prepare.append(_security_headers)
    executor = ThreadPoolExecutor(max_workers=export_threads, thread_name_prefix="web-export")
    own_encoder = encoder is None
    encoder = encoder or Encoder()
    _log.info("downloads are encoded with libsndfile %s", sf.__libsndfile_version__)
    routes = _Routes(store, objects, executor, encoder, send_timeout, ready_wait)
    served = Counter("voice_recorder_downloads", "Pages and files the download server served (200 or 206), by kind",
                     ["kind"], registry=metrics if metrics is not None else CollectorRegistry(auto_describe=False))
    app.router.add_get("/r/{rid}", _counting(served, "page", routes.page))
    app.router.add_get("/r/{rid}/files/{name}", _counting(served, "track", routes.wav))
    app.router.add_get("/r/{rid}/all.zip", _counting(served, "zip", routes.zip), allow_head=False)
    app.router.add_get("/r/{rid}/all.{fmt}.zip", _counting(served, "zip", routes.zip), allow_head=False)
    app.router.add_get("/r/{rid}/mix.{fmt}", _counting(served, "mix", routes.mix), allow_head=False)
    app.router.add_get("/r/{rid}/{fmt}/{name}", _counting(served, "track", routes.track))
    app.router.add_get(r"/r/{rid}/{marker:labels\.txt|chapters\.json}", _counting(served, "notes", routes.marker))
    app.router.add_get("/player.js", _player_script)

    async def shutdown(_app: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)
        if own_encoder:
            encoder.shutdown()

    app.on_cleanup.append(shutdown)
    return app
