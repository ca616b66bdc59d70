"""The download web server: a page per recording with players, a who-spoke-when
timeline and downloads (WAV, FLAC, Ogg Opus, MP3: per track, all tracks as a
ZIP, the mixdown).

Typical use by the bot::

    server = WebServer(create_app(AsyncRecordingStore(store)), settings.http_host, settings.http_port,
                       max_connections=settings.http_max_connections)
    await server.start()
    link = download_url(settings.public_url, recording)
    ...
    await server.stop()
"""

from bot.web.sndlib import prefer_system_libsndfile

# Before any module below imports soundfile (see bot.web.sndlib).
SNDFILE = prefer_system_libsndfile()

from bot.web.app import NOT_FOUND_BODY, create_app, download_url  # noqa: E402
from bot.web.server import WebServer  # noqa: E402

__all__ = ["NOT_FOUND_BODY", "WebServer", "create_app", "download_url"]
