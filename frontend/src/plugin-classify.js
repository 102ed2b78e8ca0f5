// jsPsych 8 plugin: one timed classification trial (as in Feather et al. 2023).
//
// Fixation cross → the query image for a set number of frames → a noise mask
// for a set number of frames → one button per category. With `image_ms: null`
// the image stays up, with the buttons, until the participant answers.
//
// Timing is counted in display frames, not timers: both images are decoded
// before the fixation starts, then one requestAnimationFrame loop switches the
// layers. A duration of d ms lasts n = round(d / frame_ms) frames, frame_ms
// from the session's refresh-rate estimate (`estimateRefreshRate` in frame-timing.js, median of
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
import { choiceGridKeys } from "./choice-grid.js";
import { FALLBACK_HZ, framePhases, framesFor, imageTiming } from "./frame-timing.js";
import { escapeHtml } from "./html.js";
import { ANSWER_DATA, ImageScreenPlugin, answerWindow, decodeAll, progressBar, screenParameters } from "./trial-screen.js";

export const CLASSIFY_QUESTION = "What did you see?";

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
    /** on_answer gets {trial_id, choice, rt_ms, timing}. */
    ...screenParameters("Image"),
  },
  data: {
    /** choice: index of the chosen category; rt_ms: from the frame the buttons appeared in to the answer. */
    ...ANSWER_DATA,
    category: { type: ParameterType.STRING },
    /** {image_onset_ms, image_offset_ms, shown_ms, refresh_hz, frames} */
    timing: { type: ParameterType.COMPLEX },
  },
};

/** The rate frames are counted at: the session's estimate, or FALLBACK_HZ when there is none. */
const countingHz = (trial) => (trial.refresh_hz > 0 ? trial.refresh_hz : FALLBACK_HZ);

export function renderClassifyHtml(trial) {
  const buttons = trial.categories
    .map(
      (c, k) =>
        `<button type="button" class="classify-choice" data-choice="${k}" tabindex="${k === 0 ? 0 : -1}" disabled>${escapeHtml(c)}</button>`
    )
    .join("");
  const mask = trial.mask ? `<img class="classify-mask" src="${escapeHtml(trial.mask)}" alt="" draggable="false" hidden>` : "";
  return `<div class="classify">
    ${progressBar(trial, "Image", "classify-progress")}
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

class ImageClassifyPlugin extends ImageScreenPlugin {
  static info = info;

  trial(display_element, trial) {
    display_element.innerHTML = renderClassifyHtml(trial);
    const stage = display_element.querySelector(".classify-stage");
    const fixation = stage.querySelector(".classify-fixation");
    const image = stage.querySelector(".classify-image");
    const mask = stage.querySelector(".classify-mask");
    const response = display_element.querySelector(".classify-response");
    const grid = display_element.querySelector(".classify-choices");
    const buttons = [...grid.querySelectorAll("button.classify-choice")];
    const hz = countingHz(trial);
    const untilAnswered = trial.image_ms == null;
    let ended = false;
    let resolveReady;
    this.ready = new Promise((r) => (resolveReady = r));

    const answers = answerWindow({ controls: buttons, onKey: choiceGridKeys(buttons, trial.categories, (k) => respond(k)) });
    const show = (p) => {
      stage.dataset.phase = p;
      fixation.hidden = p !== "fixation";
      image.hidden = !(p === "image" || p === "image-response");
      if (mask) mask.hidden = p !== "mask";
    };
    const phases = framePhases({
      frames: {
        fixation: framesFor(trial.fixation_ms, hz),
        image: untilAnswered ? null : framesFor(trial.image_ms, hz),
        mask: mask ? framesFor(trial.mask_ms, hz) : 0,
      },
      hz,
      show,
      onResponse: (t) => {
        response.hidden = false;
        answers.open(t);
        // Focus the group, not a button: nothing looks pre-chosen, and the arrow keys work at once.
        if (typeof grid.focus === "function") grid.focus({ preventScroll: true });
        resolveReady(t);
      },
    });

    const finish = (choice, rt_ms) => {
      if (ended) return;
      ended = true;
      this.answer(trial, { choice, rt_ms, timing: imageTiming(phases.times.onset, phases.times.offset, hz) });
    };
    const respond = (choice) => {
      const rt_ms = answers.close();
      if (rt_ms === null) return;
      buttons[choice].classList.add("classify-chosen");
      if (!untilAnswered) return finish(choice, rt_ms);
      phases.takeImageAway(() => {
        show("done");
        finish(choice, rt_ms);
      });
    };
    buttons.forEach((b) => b.addEventListener("click", () => respond(Number(b.dataset.choice))));

    decodeAll(mask ? [image, mask] : [image]).then(() => {
      if (!ended) phases.start();
    });
    this.cancel = () => {
      ended = true;
      phases.stop();
      answers.stop();
    };
  }

  answer(trial, { choice, rt_ms, timing }) {
    const data = { trial_id: trial.trial_id, choice, rt_ms, timing };
    this.end(trial, data, { ...data, category: trial.categories[choice] ?? null });
  }

  /** Plausible data: the image up for exactly its frames, from a start after the fixation. */
  simulationDefaults(trial, random) {
    const hz = countingHz(trial);
    const frameMs = 1000 / hz;
    const rt_ms = Math.round(random.sampleExGaussian(700, 100, 1 / 250, true));
    const frames = trial.image_ms == null ? Math.max(1, Math.round(rt_ms / frameMs)) : framesFor(trial.image_ms, hz);
    const onset = performance.now() + (framesFor(trial.fixation_ms, hz) || 0) * frameMs;
    return {
      trial_id: trial.trial_id,
      choice: random.randomInt(0, trial.categories.length - 1),
      rt_ms,
      timing: imageTiming(onset, onset + frames * frameMs, hz),
    };
  }

  respondAs(display_element, data) {
    const button = display_element.querySelector(`button.classify-choice[data-choice="${data.choice}"]`);
    this.jsPsych.pluginAPI.clickTarget(button, Math.min(data.rt_ms, 5));
  }
}

export default ImageClassifyPlugin;
