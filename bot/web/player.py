"""The page's multitrack player: its HTML pieces and its script (``player.js``).

Every speaker's track is its own ``<audio>`` element, played together and kept
in step by the script: one element is the clock, the others play a little
slower or faster while they are more than 10 ms off it (jump back when more
than 0.5 s off), and all wait while one of them buffers. Elements rather than the Web Audio API: an element
streams its WAV with Range requests and holds a few seconds, where Web Audio
would have to download and decode every track whole first (an hour of one
speaker is 660 MiB of decoded samples). Mute and solo mute elements; volume is
the element's volume. Without the script the page still works: each element
keeps its own controls, and the player's controls stay hidden (the script
marks the page ``player-ready`` when it takes over).

User text (names, notes) is escaped here like everywhere on the page.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from bot.storage import Note
from bot.units import clock

__all__ = ["PLAYER_SCRIPT", "render_mix_controls", "render_notes", "render_transport", "PLAYER_STYLE"]

#: Served at ``/player.js``; the page's CSP allows scripts from the server only.
PLAYER_SCRIPT = Path(__file__).with_name("player.js").read_text(encoding="utf-8")

#: The player's part of the page's stylesheet: big enough buttons to hit with a thumb.
PLAYER_STYLE = """
#player, td.mix button, td.mix input { display: none; }
.player-ready #player { display: flex; flex-wrap: wrap; align-items: center; gap: .6em; margin: 1em 0 .3em; }
.player-ready td.mix button, .player-ready td.mix input { display: inline-block; }
#player button.play { font-size: 1.1em; min-width: 6em; min-height: 2.6em; }
#player .position { font-variant-numeric: tabular-nums; }
#player .hint { color: #666; font-size: .9em; }
.player-ready #timeline { cursor: pointer; touch-action: manipulation; }
td.mix { white-space: nowrap; }
td.mix button { min-width: 3.2em; min-height: 2.4em; }
td.mix button[aria-pressed="true"] { background: #4e79a7; color: #fff; border-color: #4e79a7; }
td.mix input { vertical-align: middle; width: 7em; }
tr.silent td.name { color: #999; text-decoration: line-through; }
#notes button { font-variant-numeric: tabular-nums; margin-right: .5em; }
#notes .author { color: #666; }
@media (max-width: 40em) {
  body { margin: 1em auto; }
  table, thead, tbody, tr, td { display: block; }
  thead { display: none; }
  tr.speaker { border: 1px solid #ddd; border-radius: .4em; margin: 0 0 .6em; padding: .3em; }
  h1 { font-size: 1.5em; }
  td { border: none; padding: .2em .4em; }
  td.name { font-weight: bold; }
  td.fact { display: inline-block; }
  td.fact::before { content: attr(data-label) ": "; color: #666; }
  td.mix input { width: 45%; }
  /* The names and bars would be a few pixels tall at a phone's width: scroll it sideways instead. */
  .timeline-scroll { overflow-x: auto; }
  #timeline { min-width: 40em; }
  audio { width: 100%; }
}
"""


def render_transport() -> str:
    """Play/pause, the position, and how to seek."""
    return (
        '<div id="player" data-playing="false" data-position="0">'
        '<button type="button" class="play" aria-label="Play all tracks">\N{BLACK RIGHT-POINTING TRIANGLE} Play'
        '</button><span class="position" aria-live="off">0:00.0</span>'
        '<span class="hint">Space: play/pause · click or tap the timeline to jump there</span></div>'
    )


def render_mix_controls(display_name: str) -> str:
    """One track's mute and solo buttons and volume slider."""
    name = escape(display_name, quote=True)
    return (
        f'<button type="button" class="mute" aria-pressed="false" aria-label="Mute {name}">Mute'
        f'</button> <button type="button" class="solo" aria-pressed="false" aria-label="Solo {name}">Solo'
        f'</button> <input class="volume" type="range" min="0" max="1" step="0.05" value="1" '
        f'aria-label="Volume of {name}">'
    )


def render_notes(notes: list[Note]) -> str:
    """The notes as a list; each time jumps the player there."""
    if not notes:
        return ""
    items = "".join(
        f'<li><button type="button" class="seek" data-at="{n.at:.3f}">{clock(n.at)}</button>'
        f'{escape(n.text)} <span class="author">({escape(n.author_name)})</span></li>'
        for n in notes
    )
    return f'<h2>Notes</h2><ol id="notes">{items}</ol>'
