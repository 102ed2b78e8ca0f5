// jsPsych 8 plugin: one timed classification trial (as in Feather et al. 2023).
//
// Fixation cross → the query image for a set number of frames → a noise mask
// for a set number of frames → one button per category. With `image_ms: null`
// the image stays up, with the buttons, until the participant answers.
//
// Timing is counted in display frames, not timers: both images are decoded
// before the fixation starts, then one requestAnimationFrame loop switches the
// layers. A duration of d ms lasts n = round(d / frame_ms) frames, frame_ms
// from the session's refresh-rate estimate (`estimateRefreshRate`, median of
// ~20 rAF intervals). Each phase change is written in a rAF callback, and the
// callback's timestamp is taken as the moment of that frame: the image's
// onset is the timestamp of the frame that first shows it, its offset the
// timestamp of the frame the mask replaces it (for `image_ms: null`, the first
// frame after the answer). A phase ends at the first frame at least
// n − ½ frames after it started, so a dropped frame shows up as a longer
// measured duration, never a shorter one.
//
// The buttons keep their place (hidden, disabled) until the response phase,
// so nothing moves when they appear. Keyboard: the arrow keys move focus
// across the grid (Home / End: first / last), Enter or Space chooses the
// focused category, a letter key moves focus to the next category starting
// with it. RT is measured from the frame the buttons appear in.
//
// Data: {trial_id, choice, category, rt_ms, timing}; timing =
// {image_onset_ms, image_offset_ms, shown_ms, refresh_hz, frames} (ms since
// performance.timeOrigin; refresh_hz = the rate frames were counted at: the
// session's estimate, or 60 when there was none). `on_answer` gets {trial_id, choice, rt_ms, timing}
// right before the trial ends (also in simulation mode).

import { ParameterType } from "jspsych";
import { escapeHtml } from "./html.js";
import { progressHtml } from "./ui.js";

export const CLASSIFY_QUESTION = "What did you see?";
/** Frame rate assumed when the refresh rate could not be estimated. */
export const FALLBACK_HZ = 60;
/** Grid columns assumed for Up/Down when the page has no layout (e.g. jsdom). */
const FALLBACK_COLUMNS = 4;

const info = {
  name: "image-classify",
  version: "1.0.0",
  parameters: {
    /** Opaque trial id from the server, sent back with the answer. */
    trial_id: { type: ParameterType.STRING, default: undefined },
    /** URL of the query image. */
    query: { type: ParameterType.IMAGE, default: undefined },
    /** URL of the noise mask (null: no mask). */
    mask: { type: ParameterType.IMAGE, default: null },
    /** Category labels; the answer's `choice` is an index into this list. */
    categories: { type: ParameterType.STRING, array: true, default: undefined },
    /** Fixation cross duration (ms; 0 = none). */
    fixation_ms: { type: ParameterType.FLOAT, default: 300 },
    /** Image duration (ms); null = until answered. */
    image_ms: { type: ParameterType.FLOAT, default: 300 },
    /** Mask duration (ms; 0 = none). */
    mask_ms: { type: ParameterType.FLOAT, default: 300 },
    /** The session's refresh-rate estimate (Hz); null = unknown (60 Hz assumed for counting). */
    refresh_hz: { type: ParameterType.FLOAT, default: null },
    question: { type: ParameterType.STRING, default: CLASSIFY_QUESTION },
    progress_current: { type: ParameterType.INT, default: null },
    progress_total: { type: ParameterType.INT, default: null },
    progress_noun: { type: ParameterType.STRING, default: "Image" },
    /** Called with {trial_id, choice, rt_ms, timing} as soon as the answer is complete. */
    on_answer: { type: ParameterType.FUNCTION, default: null },
  },
  data: {
    trial_id: { type: ParameterType.STRING },
    /** Index of the chosen category in `categories`. */
    choice: { type: ParameterType.INT },
    category: { type: ParameterType.STRING },
    /** Milliseconds from the frame the buttons appeared in to the answer. */
    rt_ms: { type: ParameterType.FLOAT },
    /** {image_onset_ms, image_offset_ms, shown_ms, refresh_hz, frames} */
    timing: { type: ParameterType.COMPLEX },
  },
};

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

export function renderClassifyHtml(trial) {
  const progress = progressHtml(trial.progress_current, trial.progress_total, trial.progress_noun || "Image", "classify-progress");
  const buttons = trial.categories
    .map(
      (c, k) =>
        `<button type="button" class="classify-choice" data-choice="${k}" tabindex="${k === 0 ? 0 : -1}" disabled>${escapeHtml(c)}</button>`
    )
    .join("");
  const mask = trial.mask ? `<img class="classify-mask" src="${escapeHtml(trial.mask)}" alt="" draggable="false" hidden>` : "";
  return `<div class="classify">
    ${progress}
    <div class="classify-stage" id="classify-stage" data-phase="wait" aria-hidden="true">
      <div class="classify-fixation" hidden>+</div>
      <img class="classify-image" id="classify-image" src="${escapeHtml(trial.query)}" alt="" draggable="false" hidden>
      ${mask}
    </div>
    <div class="classify-response" id="classify-response" hidden>
      <p id="classify-question" class="classify-question">${escapeHtml(trial.question)}</p>
      <div class="classify-choices" id="classify-choices" role="group" aria-labelledby="classify-question" tabindex="-1" style="--classify-n:${trial.categories.length}">${buttons}</div>
    </div>
  </div>`;
}

const decodeAll = (imgs) =>
  Promise.all(imgs.map((img) => (img && typeof img.decode === "function" ? img.decode().catch(() => {}) : Promise.resolve())));

/** Columns of the button grid as laid out (buttons sharing the first one's top); a fallback without layout. */
function gridColumns(buttons) {
  const rects = buttons.map((b) => b.getBoundingClientRect());
  if (!rects.length || rects.every((r) => r.height === 0)) return Math.min(FALLBACK_COLUMNS, buttons.length);
  const top = rects[0].top;
  return Math.max(1, rects.filter((r) => Math.abs(r.top - top) < 2).length);
}

class ImageClassifyPlugin {
  static info = info;

  constructor(jsPsych) {
    this.jsPsych = jsPsych;
    /** Resolves with the RT start (the frame the buttons appeared in) once answers are possible. */
    this.ready = null;
  }

  trial(display_element, trial) {
    display_element.innerHTML = renderClassifyHtml(trial);
    const stage = display_element.querySelector(".classify-stage");
    const fixation = stage.querySelector(".classify-fixation");
    const image = stage.querySelector(".classify-image");
    const mask = stage.querySelector(".classify-mask");
    const response = display_element.querySelector(".classify-response");
    const grid = display_element.querySelector(".classify-choices");
    const buttons = [...grid.querySelectorAll("button.classify-choice")];

    const hz = trial.refresh_hz > 0 ? trial.refresh_hz : FALLBACK_HZ;
    const frameMs = 1000 / hz;
    const untilAnswered = trial.image_ms == null;
    const nFix = framesFor(trial.fixation_ms, hz);
    const nImage = untilAnswered ? null : framesFor(trial.image_ms, hz);
    const nMask = mask ? framesFor(trial.mask_ms, hz) : 0;
    const raf = typeof globalThis.requestAnimationFrame === "function" ? (cb) => globalThis.requestAnimationFrame(cb) : (cb) => setTimeout(() => cb(performance.now()), frameMs);
    const cancel = typeof globalThis.cancelAnimationFrame === "function" ? (id) => globalThis.cancelAnimationFrame(id) : (id) => clearTimeout(id);

    let phase = "wait";
    let phaseStart = 0;
    let onset = null;
    let offset = null;
    let startTime = null; // RT zero: the frame the buttons appeared in
    let answered = false;
    let ended = false;
    let rafId = null;
    let current = 0; // roving focus index
    let resolveReady;
    this.ready = new Promise((r) => (resolveReady = r));

    const show = (p) => {
      phase = p;
      stage.dataset.phase = p;
      fixation.hidden = p !== "fixation";
      image.hidden = !(p === "image" || p === "image-response");
      if (mask) mask.hidden = p !== "mask";
    };
    const openResponse = (t) => {
      startTime = t;
      response.hidden = false;
      for (const b of buttons) b.disabled = false;
      document.addEventListener("keydown", onKeyDown, true);
      // Focus the group, not a button: nothing looks pre-chosen, and the arrow keys work at once.
      if (typeof grid.focus === "function") grid.focus({ preventScroll: true });
      resolveReady(t);
    };
    const elapsed = (t, n) => t - phaseStart >= (n - 0.5) * frameMs;

    const step = (t) => {
      rafId = null;
      if (ended) return;
      if (phase === "wait") {
        if (nFix > 0) {
          show("fixation");
          phaseStart = t;
        } else startImage(t);
      } else if (phase === "fixation") {
        if (elapsed(t, nFix)) startImage(t);
      } else if (phase === "image") {
        if (elapsed(t, nImage)) {
          offset = t;
          if (nMask > 0) {
            show("mask");
            phaseStart = t;
          } else {
            show("response");
            openResponse(t);
            return;
          }
        }
      } else if (phase === "mask") {
        if (elapsed(t, nMask)) {
          show("response");
          openResponse(t);
          return;
        }
      }
      rafId = raf(step);
    };
    const startImage = (t) => {
      onset = t;
      phaseStart = t;
      if (untilAnswered) {
        show("image-response");
        openResponse(t);
      } else show("image");
    };

    const timing = () => {
      const shown = offset - onset;
      return {
        image_onset_ms: round2(onset),
        image_offset_ms: round2(offset),
        shown_ms: round2(shown),
        refresh_hz: round2(hz),
        frames: Math.round(shown / frameMs),
      };
    };

    const finish = (choice, rt_ms) => {
      if (ended) return;
      ended = true;
      document.removeEventListener("keydown", onKeyDown, true);
      this.answer(trial, choice, rt_ms, timing());
    };

    const respond = (choice) => {
      if (answered || startTime === null) return;
      answered = true;
      const rt_ms = Math.max(0, Math.round((performance.now() - startTime) * 10) / 10);
      for (const b of buttons) b.disabled = true;
      buttons[choice].classList.add("classify-chosen");
      if (!untilAnswered) return finish(choice, rt_ms);
      // Until answered: the image goes in the next frame, whose timestamp is the offset.
      rafId = raf((t) => {
        offset = t;
        show("done");
        finish(choice, rt_ms);
      });
    };

    const focusAt = (i) => {
      current = Math.max(0, Math.min(buttons.length - 1, i));
      buttons.forEach((b, k) => (b.tabIndex = k === current ? 0 : -1));
      buttons[current].focus();
    };

    function onKeyDown(e) {
      if (answered || e.ctrlKey || e.metaKey || e.altKey) return;
      const active = document.activeElement;
      const onButton = buttons.includes(active);
      const at = onButton ? buttons.indexOf(active) : null;
      const key = e.key;
      let to = null;
      if (key === "ArrowRight") to = at === null ? current : at + 1;
      else if (key === "ArrowLeft") to = at === null ? current : at - 1;
      else if (key === "ArrowDown") to = at === null ? current : at + gridColumns(buttons);
      else if (key === "ArrowUp") to = at === null ? current : at - gridColumns(buttons);
      else if (key === "Home") to = 0;
      else if (key === "End") to = buttons.length - 1;
      else if (key === "Enter" || key === " " || key === "Spacebar") {
        if (!onButton || e.repeat) return;
        e.preventDefault();
        respond(at);
        return;
      } else if (key.length === 1 && /\p{L}|\p{N}/u.test(key)) {
        const k = key.toLowerCase();
        const from = at === null ? -1 : at;
        for (let j = 1; j <= buttons.length; j++) {
          const i = (from + j) % buttons.length;
          if (trial.categories[i].trim().toLowerCase().startsWith(k)) {
            to = i;
            break;
          }
        }
        if (to === null) return;
      } else return;
      e.preventDefault();
      // Up/Down past the grid's edge stay put rather than jump to the other end.
      if (to < 0 || to >= buttons.length) to = at;
      focusAt(to);
    }

    buttons.forEach((b) => b.addEventListener("click", () => respond(Number(b.dataset.choice))));
    // Whichever button gets focus (Tab, a click) becomes the roving one.
    buttons.forEach((b, k) =>
      b.addEventListener("focus", () => {
        current = k;
        buttons.forEach((x, j) => (x.tabIndex = j === k ? 0 : -1));
      })
    );

    const images = mask ? [image, mask] : [image];
    decodeAll(images).then(() => {
      if (!ended) rafId = raf(step);
    });
    this.cancel = () => {
      ended = true;
      if (rafId !== null) cancel(rafId);
      document.removeEventListener("keydown", onKeyDown, true);
    };
  }

  answer(trial, choice, rt_ms, timing) {
    const data = { trial_id: trial.trial_id, choice, rt_ms, timing };
    if (typeof trial.on_answer === "function") {
      try {
        trial.on_answer({ ...data, timing: { ...timing } });
      } catch (err) {
        console.error("on_answer hook failed", err);
      }
    }
    this.jsPsych.finishTrial({ ...data, category: trial.categories[choice] ?? null });
  }

  simulate(trial, simulation_mode, simulation_options, load_callback) {
    if (simulation_mode === "visual") {
      this.simulateVisual(trial, simulation_options, load_callback);
      return;
    }
    load_callback();
    const data = this.createSimulationData(trial, simulation_options);
    this.answer(trial, data.choice, data.rt_ms, data.timing);
  }

  /** Plausible data: the image up for exactly its frames, from a start after the fixation. */
  createSimulationData(trial, simulation_options) {
    const r = this.jsPsych.randomization;
    const hz = trial.refresh_hz > 0 ? trial.refresh_hz : FALLBACK_HZ;
    const frameMs = 1000 / hz;
    const rt_ms = Math.round(r.sampleExGaussian(700, 100, 1 / 250, true));
    const frames = trial.image_ms == null ? Math.max(1, Math.round(rt_ms / frameMs)) : framesFor(trial.image_ms, hz);
    const onset = performance.now() + (framesFor(trial.fixation_ms, hz) || 0) * frameMs;
    const shown = frames * frameMs;
    const defaults = {
      trial_id: trial.trial_id,
      choice: r.randomInt(0, trial.categories.length - 1),
      rt_ms,
      timing: {
        image_onset_ms: round2(onset),
        image_offset_ms: round2(onset + shown),
        shown_ms: round2(shown),
        refresh_hz: round2(hz),
        frames,
      },
    };
    return this.jsPsych.pluginAPI.mergeSimulationData(defaults, simulation_options);
  }

  async simulateVisual(trial, simulation_options, load_callback) {
    const display_element = this.jsPsych.getDisplayElement();
    const data = this.createSimulationData(trial, simulation_options);
    this.trial(display_element, trial);
    load_callback();
    await this.ready;
    const button = display_element.querySelector(`button.classify-choice[data-choice="${data.choice}"]`);
    this.jsPsych.pluginAPI.clickTarget(button, Math.min(data.rt_ms, 5));
  }
}

export default ImageClassifyPlugin;
