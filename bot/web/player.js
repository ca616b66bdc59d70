// The download page's multitrack player (see bot/web/player.py for why <audio> elements).
// Every track plays together; one element (the longest) is the clock and the others are
// nudged back to it when they drift further than DRIFT seconds, and all wait while one buffers. window.recordingPlayer
// exposes the state, read from the elements themselves, for tests and for people.
"use strict";
(() => {
  const root = document.getElementById("player");
  const timeline = document.getElementById("timeline");
  if (!root || !timeline) return;
  const DRIFT = 0.01; // seconds a track may be off the clock track before it is nudged back
  const RESYNC = 0.5; // seconds off at which it jumps back instead
  const tracks = [...document.querySelectorAll("tr.speaker")].map((row) => ({
    row,
    file: row.dataset.file,
    audio: row.querySelector("audio"),
    muteButton: row.querySelector("button.mute"),
    soloButton: row.querySelector("button.solo"),
    volume: row.querySelector("input.volume"),
    muted: false,
    solo: false,
  }));
  if (!tracks.length) return;
  const playButton = root.querySelector("button.play");
  const positionText = root.querySelector(".position");
  const playhead = document.getElementById("playhead");
  const axisSeconds = Number(timeline.dataset.seconds);
  const axisLeft = Number(timeline.dataset.left);
  const axisWidth = Number(timeline.dataset.width);
  let playing = false;
  let position = 0; // seconds; the clock element's time while playing

  document.documentElement.classList.add("player-ready");
  for (const track of tracks) {
    track.audio.controls = false; // one transport for all: separate controls would desync them
    track.audio.preload = "auto";
  }

  const duration = () => Math.max(axisSeconds, ...tracks.map((t) => t.audio.duration || 0));
  const clockTrack = () =>
    tracks.reduce((best, t) => ((t.audio.duration || 0) > (best.audio.duration || 0) ? t : best));
  const now = () => (playing ? clockTrack().audio.currentTime : position);

  function formatTime(seconds) {
    const tenths = Math.floor(seconds * 10);
    const minutes = Math.floor(tenths / 600);
    const rest = ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
    return `${minutes}:${rest}`;
  }

  function show() {
    const at = now();
    positionText.textContent = `${formatTime(at)} / ${formatTime(duration())}`;
    const x = axisLeft + (axisWidth - axisLeft) * Math.min(at / (axisSeconds || 1), 1);
    playhead.setAttribute("x1", x.toFixed(2));
    playhead.setAttribute("x2", x.toFixed(2));
    root.dataset.playing = String(playing);
    root.dataset.position = at.toFixed(3);
    playButton.textContent = playing ? "\u275A\u275A Pause" : "\u25B6 Play";
    playButton.setAttribute("aria-label", playing ? "Pause all tracks" : "Play all tracks");
  }

  function applyMix() {
    const anySolo = tracks.some((t) => t.solo);
    for (const t of tracks) {
      const audible = !t.muted && (!anySolo || t.solo);
      t.audio.muted = !audible;
      t.audio.volume = Number(t.volume.value);
      t.muteButton.setAttribute("aria-pressed", String(t.muted));
      t.soloButton.setAttribute("aria-pressed", String(t.solo));
      t.row.classList.toggle("silent", !audible);
    }
  }

  function seek(seconds) {
    position = Math.min(Math.max(seconds, 0), duration());
    for (const t of tracks) t.audio.currentTime = position;
    show();
  }

  function play() {
    if (playing) return;
    if (position >= duration() - 0.05) position = 0; // played to the end: start over
    for (const t of tracks) t.audio.currentTime = position;
    playing = true;
    for (const t of tracks) {
      t.audio.play().catch((error) => {
        // Autoplay refused, or the track failed: stop all rather than play some.
        console.warn("player: a track did not start", t.file, error);
        pause();
      });
    }
    show();
  }

  function pause() {
    if (!playing) return;
    position = now();
    playing = false;
    held = false;
    for (const t of tracks) t.audio.pause();
    seek(position);
  }

  // A track that has not buffered enough holds all of them (each waits where it is)
  // rather than letting the others run ahead of it.
  const HAVE_FUTURE_DATA = 3;
  const starved = (a) => !a.ended && a.currentTime < (a.duration || 0) && a.readyState < HAVE_FUTURE_DATA;
  let held = false;

  function keepInStep() {
    if (!playing) return;
    const clock = clockTrack().audio;
    if (clock.ended) {
      playing = false;
      held = false;
      position = duration();
      for (const t of tracks) t.audio.pause();
    } else if (tracks.some((t) => starved(t.audio))) {
      if (!held) {
        held = true;
        for (const t of tracks) t.audio.pause();
      }
    } else if (held) {
      held = false;
      for (const t of tracks) {
        t.audio.currentTime = clock.currentTime;
        t.audio.play().catch(() => {});
      }
    } else {
      for (const t of tracks) {
        const a = t.audio;
        if (a === clock || a.ended) continue;
        const ahead = a.currentTime - clock.currentTime;
        // Far off (a stall): jump. A little off: run a little slower or faster until back in
        // step, which is inaudible where a jump would click.
        if (Math.abs(ahead) > RESYNC) a.currentTime = clock.currentTime;
        a.playbackRate = Math.abs(ahead) > DRIFT ? 1 - Math.max(-0.1, Math.min(0.1, ahead * 2)) : 1;
        if (a.paused) a.play().catch(() => {});
      }
    }
    show();
  }

  playButton.addEventListener("click", () => (playing ? pause() : play()));
  for (const t of tracks) {
    t.muteButton.addEventListener("click", () => { t.muted = !t.muted; applyMix(); });
    t.soloButton.addEventListener("click", () => { t.solo = !t.solo; applyMix(); });
    t.volume.addEventListener("input", applyMix);
  }
  timeline.addEventListener("click", (event) => {
    const box = timeline.getBoundingClientRect();
    const x = ((event.clientX - box.left) * axisWidth) / box.width;
    if (x < axisLeft) return; // the names column
    seek(((x - axisLeft) / (axisWidth - axisLeft)) * axisSeconds);
  });
  for (const button of document.querySelectorAll("#notes button.seek")) {
    button.addEventListener("click", () => seek(Number(button.dataset.at)));
  }
  document.addEventListener("keydown", (event) => {
    if (event.key !== " " || event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
    // Space types in text fields; everywhere else, the player's own buttons included
    // (Enter presses those), it plays and pauses, as in a media player.
    if (event.target.closest("textarea, select, input:not([type=range]), [contenteditable]")) return;
    event.preventDefault(); // no page scroll, no press of the focused button
    playing ? pause() : play();
  });
  setInterval(keepInStep, 100);
  applyMix();
  show();

  window.recordingPlayer = {
    play,
    pause,
    seek,
    /** The player's state, read from the <audio> elements themselves. */
    snapshot: () => ({
      playing,
      position: now(),
      duration: duration(),
      tracks: tracks.map((t) => ({
        file: t.file,
        muted: t.muted,
        solo: t.solo,
        volume: Number(t.volume.value),
        elementMuted: t.audio.muted,
        elementVolume: t.audio.volume,
        elementPaused: t.audio.paused,
        currentTime: t.audio.currentTime,
      })),
    }),
  };
})();
