// Display frames for timed presentations: estimating the refresh rate, turning durations into frame
// counts, and the frame loop that switches fixation → image → mask → response.
//
// Timing is counted in frames, not timers. Each phase change is written in a requestAnimationFrame
// callback, and the callback's timestamp is taken as the moment of that frame. A phase of n frames ends
// at the first frame at least n − ½ frames after it started, so a dropped frame shows up as a longer
// measured duration, never a shorter one.

/** Frame rate assumed when the refresh rate could not be estimated. */
export const FALLBACK_HZ = 60;

const round2 = (x) => Math.round(x * 100) / 100;

/** Hz from rAF timestamps: 1000 / median interval; null when too few or implausible. */
export function hzFromTimestamps(stamps) {
  const d = [];
  for (let i = 1; i < stamps.length; i++) {
    const x = stamps[i] - stamps[i - 1];
    if (x > 0 && Number.isFinite(x)) d.push(x);
  }
  if (d.length < 5) return null;
  d.sort((a, b) => a - b);
  const mid = d.length >> 1;
  const median = d.length % 2 ? d[mid] : (d[mid - 1] + d[mid]) / 2;
  const hz = 1000 / median;
  return hz >= 20 && hz <= 500 ? round2(hz) : null;
}

/**
 * Estimate the display's refresh rate from `intervals` requestAnimationFrame
 * intervals (median). Resolves to Hz, or null when rAF is missing or too slow
 * (e.g. a hidden tab: after `timeoutMs`, whatever was measured counts).
 */
export function estimateRefreshRate({ intervals = 20, raf, timeoutMs = 3000 } = {}) {
  const frame = raf || (typeof globalThis.requestAnimationFrame === "function" ? (cb) => globalThis.requestAnimationFrame(cb) : null);
  if (!frame) return Promise.resolve(null);
  return new Promise((resolve) => {
    const stamps = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(hzFromTimestamps(stamps));
    };
    const timer = setTimeout(finish, timeoutMs);
    let warm = true; // the first callback after a busy stretch is often late: not counted
    const tick = (t) => {
      if (done) return;
      if (warm) warm = false;
      else stamps.push(t);
      if (stamps.length > intervals) finish();
      else frame(tick);
    };
    frame(tick);
  });
}

/** Frames a duration lasts at `hz` (≥ 1 for a positive duration; 0 for none). */
export function framesFor(ms, hz) {
  if (ms == null) return null;
  if (!(ms > 0)) return 0;
  return Math.max(1, Math.round(ms / (1000 / hz)));
}

/** The image's timing record: onset and offset (ms since performance.timeOrigin), time shown, in frames at `hz`. */
export function imageTiming(onset, offset, hz) {
  const shown = offset - onset;
  return {
    image_onset_ms: round2(onset),
    image_offset_ms: round2(offset),
    shown_ms: round2(shown),
    refresh_hz: round2(hz),
    frames: Math.round(shown / (1000 / hz)),
  };
}

/**
 * The frame loop of one timed trial at `hz`: fixation (frames.fixation; 0 = none) → image (frames.image)
 * → mask (frames.mask; 0 = none) → response. With frames.image null the image stays up with the response
 * ("image-response") until takeImageAway(). show(phase) draws a phase; onResponse(t) opens the response
 * in the frame at time t. `times` holds the image's onset and offset (frame times) once known.
 */
export function framePhases({ frames, hz, show, onResponse }) {
  const frameMs = 1000 / hz;
  const raf =
    typeof globalThis.requestAnimationFrame === "function"
      ? (cb) => globalThis.requestAnimationFrame(cb)
      : (cb) => setTimeout(() => cb(performance.now()), frameMs);
  const cancel = typeof globalThis.cancelAnimationFrame === "function" ? (id) => globalThis.cancelAnimationFrame(id) : (id) => clearTimeout(id);
  const times = { onset: null, offset: null };
  let phase = "wait";
  let phaseStart = 0;
  let rafId = null;
  let stopped = false;

  const enter = (p, t) => {
    phase = p;
    phaseStart = t;
    show(p);
  };
  const elapsed = (t, n) => t - phaseStart >= (n - 0.5) * frameMs;
  const respondFrom = (p, t) => {
    enter(p, t);
    onResponse(t);
  };
  const startImage = (t) => {
    times.onset = t;
    if (frames.image === null) respondFrom("image-response", t);
    else enter("image", t);
  };
  /** One frame of the loop; false once the response is open. */
  const advance = (t) => {
    if (phase === "wait") {
      if (frames.fixation > 0) enter("fixation", t);
      else startImage(t);
    } else if (phase === "fixation") {
      if (elapsed(t, frames.fixation)) startImage(t);
    } else if (phase === "image") {
      if (elapsed(t, frames.image)) {
        times.offset = t;
        if (frames.mask > 0) enter("mask", t);
        else respondFrom("response", t);
      }
    } else if (phase === "mask" && elapsed(t, frames.mask)) respondFrom("response", t);
    return phase !== "response" && phase !== "image-response";
  };
  const step = (t) => {
    rafId = null;
    if (!stopped && advance(t)) rafId = raf(step);
  };
  return {
    times,
    start() {
      if (!stopped) rafId = raf(step);
    },
    /** Image up until answered: it goes in the next frame, whose time is its offset; then `then()`. */
    takeImageAway(then) {
      rafId = raf((t) => {
        times.offset = t;
        then();
      });
    },
    stop() {
      stopped = true;
      if (rafId !== null) cancel(rafId);
    },
  };
}
