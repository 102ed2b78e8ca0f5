// jsPsych 8 plugin: one two-alternative forced-choice image screen.
//
// Shows the query image on top and two option images side by side. The
// participant picks with a click/tap on an option button or with the keys
// F (left = option 0) and J (right = option 1).
//
// RT is measured from the moment the three images are painted: we wait for
// every img.decode(), then the next requestAnimationFrame, and take
// performance.now() there. Responses before that moment are impossible (the
// buttons are disabled and keys are not listened to yet).
//
// Data: {trial_id, choice, rt_ms}. The `on_answer` hook is called with the
// same object right before the trial ends (also in simulation mode).

import { ParameterType } from "jspsych";
import { escapeHtml } from "./html.js";
import { progressHtml } from "./ui.js";

export const QUESTION = "Which of these two images is closer to the query image?";
const KEYS = { f: 0, j: 1 };

const info = {
  name: "image-2afc",
  version: "1.0.0",
  parameters: {
    /** Opaque trial id from the server, sent back with the answer. */
    trial_id: { type: ParameterType.STRING, default: undefined },
    /** URL of the query image. */
    query: { type: ParameterType.IMAGE, default: undefined },
    /** URLs of the two option images: [left (0), right (1)]. */
    options: { type: ParameterType.IMAGE, array: true, default: undefined },
    /** Question shown above the images. */
    question: { type: ParameterType.STRING, default: QUESTION },
    /** 1-based number of this image for the progress bar ("Image k of n"). */
    progress_current: { type: ParameterType.INT, default: null },
    /** Total number of images for the progress bar. */
    progress_total: { type: ParameterType.INT, default: null },
    /** Word before "k of n" in the progress text. */
    progress_noun: { type: ParameterType.STRING, default: "Image" },
    /** Called with {trial_id, choice, rt_ms} as soon as the participant answers. */
    on_answer: { type: ParameterType.FUNCTION, default: null },
  },
  data: {
    trial_id: { type: ParameterType.STRING },
    /** 0 = left option, 1 = right option. */
    choice: { type: ParameterType.INT },
    /** Milliseconds from the images being painted to the answer. */
    rt_ms: { type: ParameterType.FLOAT },
  },
};

/** Resolve with performance.now() at the first frame after all images are decoded. */
export function whenPainted(images) {
  const decoded = images.map((img) =>
    typeof img.decode === "function" ? img.decode().catch(() => {}) : Promise.resolve()
  );
  return Promise.all(decoded).then(
    () =>
      new Promise((resolve) => {
        const raf = globalThis.requestAnimationFrame || ((cb) => setTimeout(cb, 16));
        raf(() => resolve(performance.now()));
      })
  );
}

export function renderTrialHtml(trial) {
  const [left, right] = trial.options;
  const progress = progressHtml(trial.progress_current, trial.progress_total, trial.progress_noun || "Image", "afc-progress");
  return `<div class="afc">
    ${progress}
    <p id="afc-question" class="afc-question">${escapeHtml(trial.question)}</p>
    <div class="afc-query"><img id="afc-query-img" src="${escapeHtml(trial.query)}" alt="Query image" draggable="false"></div>
    <div class="afc-options" role="group" aria-labelledby="afc-question">
      <button type="button" class="afc-option" data-choice="0" aria-label="Left image (F)" aria-keyshortcuts="F" disabled>
        <img src="${escapeHtml(left)}" alt="" draggable="false"><span class="afc-key" aria-hidden="true">F</span>
      </button>
      <button type="button" class="afc-option" data-choice="1" aria-label="Right image (J)" aria-keyshortcuts="J" disabled>
        <img src="${escapeHtml(right)}" alt="" draggable="false"><span class="afc-key" aria-hidden="true">J</span>
      </button>
    </div>
  </div>`;
}

class Image2afcPlugin {
  static info = info;

  constructor(jsPsych) {
    this.jsPsych = jsPsych;
    /** Resolves with the RT start time once the images are painted. */
    this.ready = null;
  }

  // Synchronous: jsPsych calls on_load itself after trial() returns.
  trial(display_element, trial) {
    display_element.innerHTML = renderTrialHtml(trial);
    const buttons = [...display_element.querySelectorAll("button.afc-option")];
    const images = [...display_element.querySelectorAll(".afc img")];
    let startTime = null;
    let answered = false;

    const onKeyDown = (e) => {
      if (e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
      const choice = KEYS[String(e.key).toLowerCase()];
      if (choice === undefined) return;
      e.preventDefault();
      respond(choice);
    };

    const respond = (choice) => {
      if (answered || startTime === null) return;
      answered = true;
      const rt_ms = Math.max(0, Math.round((performance.now() - startTime) * 10) / 10);
      document.removeEventListener("keydown", onKeyDown, true);
      for (const b of buttons) b.disabled = true;
      buttons[choice].classList.add("afc-chosen");
      this.answer(trial, choice, rt_ms);
    };

    for (const button of buttons) {
      button.addEventListener("click", () => respond(Number(button.dataset.choice)));
    }

    this.ready = whenPainted(images).then((t) => {
      startTime = t;
      for (const b of buttons) b.disabled = false;
      // Capture phase on document: works wherever focus is, and also sees the
      // non-bubbling events jsPsych's simulation API dispatches.
      document.addEventListener("keydown", onKeyDown, true);
      return t;
    });
  }

  answer(trial, choice, rt_ms) {
    const data = { trial_id: trial.trial_id, choice, rt_ms };
    if (typeof trial.on_answer === "function") {
      try {
        trial.on_answer({ ...data });
      } catch (err) {
        console.error("on_answer hook failed", err);
      }
    }
    this.jsPsych.finishTrial(data);
  }

  simulate(trial, simulation_mode, simulation_options, load_callback) {
    if (simulation_mode === "visual") {
      // Not returned: a resolved promise would end the trial before the key press.
      this.simulateVisual(trial, simulation_options, load_callback);
      return;
    }
    load_callback();
    const data = this.createSimulationData(trial, simulation_options);
    this.answer(trial, data.choice, data.rt_ms);
  }

  createSimulationData(trial, simulation_options) {
    const defaults = {
      trial_id: trial.trial_id,
      choice: this.jsPsych.randomization.randomInt(0, 1),
      rt_ms: Math.round(this.jsPsych.randomization.sampleExGaussian(600, 80, 1 / 200, true)),
    };
    return this.jsPsych.pluginAPI.mergeSimulationData(defaults, simulation_options);
  }

  async simulateVisual(trial, simulation_options, load_callback) {
    const display_element = this.jsPsych.getDisplayElement();
    const data = this.createSimulationData(trial, simulation_options);
    this.trial(display_element, trial);
    load_callback();
    await this.ready;
    const key = data.choice === 0 ? "f" : "j";
    // Use a short delay rather than the simulated RT so tests stay fast.
    this.jsPsych.pluginAPI.pressKey(key, Math.min(data.rt_ms, 5));
  }
}

export default Image2afcPlugin;
