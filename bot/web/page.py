"""The download page: HTML with the multitrack player (:mod:`bot.web.player`),
links per track, the notes, and an inline SVG timeline of who spoke when with
the notes on it. Every user-controlled string is escaped here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from bot.storage import CHAPTERS_NAME, LABELS_NAME, Manifest, Note
from bot.units import clock, duration, moment, size
from bot.web.activity import WINDOW_SECONDS, TrackActivity
from bot.web.encode import FORMATS
from bot.web.player import PLAYER_STYLE, render_mix_controls, render_notes, render_transport

__all__ = ["DownloadSizes", "TrackInfo", "render_page", "render_preparing", "render_timeline"]

_WIDTH = 1000
_LABEL = 180
_ROW = 28
_NOTE_COLOR = "#c0392b"
_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


@dataclasses.dataclass(frozen=True, slots=True)
class TrackInfo:
    """What the page shows about one speaker's track."""

    user_id: int
    display_name: str
    file: str
    size: int
    duration: float
    talk_seconds: float
    activity: TrackActivity


@dataclasses.dataclass(frozen=True, slots=True)
class DownloadSizes:
    """Bytes of each download by format name; None where the file is not made yet."""

    everything: dict[str, int | None]
    mix: dict[str, int | None]
    tracks: dict[str, dict[str, int | None]]


def _offers(link: Callable[[str, str], str], paths: dict[str, str], sizes: dict[str, int | None]) -> str:
    """One link per format, each with its size once known."""
    parts = []
    for fmt in FORMATS.values():
        known = sizes.get(fmt.name)
        weight = size(known) if known is not None else "made on request"
        parts.append(f'<a href="{link(paths[fmt.name], "&download=1")}" '
                     f'data-format="{fmt.name}">{fmt.label}</a> <span class="size">({weight})</span>')
    return " ".join(parts)


def render_preparing(what: str, progress: float) -> str:
    """The page a download shows while its file is being encoded; it reloads itself
    (the response's Refresh header) and the download starts once the file is ready."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Preparing the download</title></head>
<body style="font-family: system-ui, sans-serif; margin: 2em">
<p>Preparing {escape(what)}: <progress max="100" value="{progress * 100:.0f}"></progress> {progress * 100:.0f} %.</p>
<p>This page reloads itself; the download starts when the file is ready. It is kept, so the next download is
immediate.</p>
</body></html>
"""


def _tick(seconds: float, total: float) -> str:
    # Short recordings need tenths, or the axis repeats the same second.
    return duration(seconds) if total < 60 else clock(seconds)


def render_timeline(tracks: list[TrackInfo], notes: Sequence[Note] = ()) -> str:
    """An inline SVG: one row per speaker, a bar over each of their talk spans, a
    line at each note, and the player's playhead. Its ``data-`` attributes tell
    the player where the time axis lies, to seek where it is clicked."""
    total = max((t.activity.windows for t in tracks), default=0) or 1
    height = _ROW * len(tracks) + 24
    scale = (_WIDTH - _LABEL) / total
    parts = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height}" '
        f'role="img" aria-label="Who spoke when" preserveAspectRatio="xMinYMin meet" '
        f'data-seconds="{total * WINDOW_SECONDS:.3f}" data-left="{_LABEL}" data-width="{_WIDTH}">'
    ]
    for row, track in enumerate(tracks):
        y = row * _ROW
        color = _COLORS[row % len(_COLORS)]
        parts.append(
            f'<text x="4" y="{y + 18}" font-size="14" fill="#222">{escape(track.display_name[:24])}</text>'
            f'<rect x="{_LABEL}" y="{y + 4}" width="{_WIDTH - _LABEL}" height="{_ROW - 8}" fill="#eee"/>'
        )
        for start, end in track.activity.spans:
            parts.append(
                f'<rect class="talk" x="{_LABEL + start * scale:.2f}" y="{y + 4}" '
                f'width="{max((end - start) * scale, 0.5):.2f}" height="{_ROW - 8}" fill="{color}"/>'
            )
    rows_bottom = _ROW * len(tracks)
    for note in notes:
        x = _LABEL + min(note.at / WINDOW_SECONDS, total) * scale
        parts.append(
            f'<g class="note" data-at="{note.at:.3f}"><title>{clock(note.at)} {escape(note.text)}</title>'
            f'<line x1="{x:.2f}" y1="0" x2="{x:.2f}" y2="{rows_bottom}" stroke="{_NOTE_COLOR}" stroke-width="2" '
            f'stroke-dasharray="4 3"/><path d="M{x - 5:.2f} 0 L{x + 5:.2f} 0 L{x:.2f} 7 Z" fill="{_NOTE_COLOR}"/></g>'
        )
    parts.append(f'<line id="playhead" x1="{_LABEL}" y1="0" x2="{_LABEL}" y2="{rows_bottom}" stroke="#111" '
                 f'stroke-width="2"/>')
    axis_y = _ROW * len(tracks) + 16
    for i in range(5):
        x = _LABEL + (_WIDTH - _LABEL) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text x="{x:.0f}" y="{axis_y}" font-size="12" fill="#555" text-anchor="{anchor}">'
            f"{_tick(total * WINDOW_SECONDS * i / 4, total * WINDOW_SECONDS)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_page(manifest: Manifest, key: str, tracks: list[TrackInfo], markers: list[str], sizes: DownloadSizes,
                *, expires: datetime | None) -> str:
    """The whole HTML page for one recording; ``key`` is appended to every link.
    ``markers`` are the marker files (label track, chapters) the recording has; ``sizes``:
    what each download weighs, where known; ``expires``: when the recording and its link
    are deleted (None: kept forever)."""
    rid = quote(manifest.recording_id, safe="")
    q = "?key=" + quote(key, safe="")

    def link(path: str, extra: str = "") -> str:
        return escape(f"/r/{rid}/{path}{q}{extra}", quote=True)

    ended = moment(manifest.ended_at) if manifest.ended_at else "?"
    kept = f" · kept until {moment(expires)}" if expires is not None else ""
    status = (
        '<p class="warn">This recording was interrupted; tracks end where it stopped.</p>'
        if manifest.status == "interrupted" else ""
    )
    rows = []
    for t in tracks:
        name = quote(t.file, safe="")
        rows.append(
            f'<tr class="speaker" data-user="{t.user_id}" data-file="{escape(t.file, quote=True)}">'
            f'<td class="name">{escape(t.display_name)}</td>'
            f'<td class="fact" data-label="Duration">{clock(t.duration)}</td>'
            f'<td class="fact" data-label="Talk time">{clock(t.talk_seconds)}</td>'
            f'<td class="fact" data-label="Size">{size(t.size)}</td>'
            f'<td class="mix">{render_mix_controls(t.display_name)}'
            f'<audio controls preload="metadata" src="{link("files/" + name)}"></audio></td>'
            f'<td class="formats">{_offers(link, {f: f"{f}/{name}" for f in FORMATS}, sizes.tracks[t.file])}</td></tr>'
        )
    marker_links = "".join(
        f'\n<a href="{link(name, "&download=1")}">{label}</a>'
        for name, label in ((LABELS_NAME, "Notes as Audacity labels (labels.txt)"),
                            (CHAPTERS_NAME, "Notes as podcast chapters (chapters.json)"))
        if name in markers
    )
    title = f"Recording {manifest.recording_id} · #{manifest.channel_name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ padding: .4em .6em; border-bottom: 1px solid #ddd; text-align: left; }}
audio {{ width: 18em; }}
.warn {{ background: #fff3cd; padding: .5em; }}
.downloads a, .formats a {{ margin-left: .8em; }}
.size {{ color: #666; font-size: .9em; }}
#timeline {{ width: 100%; height: auto; margin: 1em 0; }}
{PLAYER_STYLE}
</style></head>
<body>
<h1>{escape(title)}</h1>
<p>{escape(manifest.guild_name)} · started {moment(manifest.started_at)} · ended {ended}{kept}</p>
{status}
<ul class="downloads">
<li>All tracks (ZIP): {_offers(link, {f: f"all.{f}.zip" for f in FORMATS}, sizes.everything)}</li>
<li>Mixed down: {_offers(link, {f: f"mix.{f}" for f in FORMATS}, sizes.mix)}</li>
{f"<li>{marker_links}</li>" if marker_links else ""}
</ul>
<h2>Who spoke when</h2>
{render_transport() if tracks else ""}
<div class="timeline-scroll">{render_timeline(tracks, manifest.notes)}</div>
<h2>Speakers</h2>
<table><thead><tr><th>Speaker</th><th>Duration</th><th>Talk time</th><th>Size</th>
<th>Listen</th><th>Download</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
{render_notes(manifest.notes)}
<script src="/player.js" id="player-script"></script>
</body></html>
"""
