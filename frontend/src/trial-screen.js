// What the three image task plugins (2AFC, clustering, classification) share, so that each plugin keeps
// only its layout and how a choice is made:
//
// - the parameters and data fields every image screen has (progress bar, on_answer, {trial_id, choice, rt_ms});
// - waiting until the images are painted (the RT zero of the 2AFC and clustering screens);
// - the answer window: controls disabled and keys unheard until it opens, the first answer closes it,
//   RT counted from the moment it opened;
// - ending the trial: on_answer once, with a copy of the answer, then jsPsych's finishTrial;
// - jsPsych's simulation modes ("data-only": the simulated data is the answer; "visual": the real screen,
//   answered through its controls once it accepts answers).
//
// Nothing here knows which option is the target: the plugins are never told.

import { ParameterType } from "jspsych";
import { progressHtml } from "./ui.js";

/** Parameters of every image screen: the progress bar ("<noun> k of n", 1-based k) and the on_answer hook. */
export function screenParameters(noun) {
  return {
    progress_current: { type: ParameterType.INT, default: null },
    progress_total: { type: ParameterType.INT, default: null },
    progress_noun: { type: ParameterType.STRING, default: noun },
    /** Called once, with a copy of the answer, right before the trial ends (also in simulation mode). */
    on_answer: { type: ParameterType.FUNCTION, default: null },
  };
}

/** Data fields of a one-answer screen: the server's opaque trial id, the chosen option's index, the RT. */
export const ANSWER_DATA = {
  trial_id: { type: ParameterType.STRING },
  choice: { type: ParameterType.INT },
  rt_ms: { type: ParameterType.FLOAT },
};

/** The progress bar of a screen (nothing when the timeline gave no numbers); ids `<id>` and `<id>-text`. */
export function progressBar(trial, noun, id) {
  return progressHtml(trial.progress_current, trial.progress_total, trial.progress_noun || noun, id);
}

/** Resolves once every image is decoded (a failed decode counts as done: the image shows what it can). */
export function decodeAll(images) {
  return Promise.all(
    images.map((img) => (img && typeof img.decode === "function" ? img.decode().catch(() => {}) : Promise.resolve()))
  );
}

/** Resolve with performance.now() at the first frame after all images are decoded. */
export function whenPainted(images) {
  return decodeAll(images).then(
    () =>
      new Promise((resolve) => {
        const raf = globalThis.requestAnimationFrame || ((cb) => setTimeout(cb, 16));
        raf(() => resolve(performance.now()));
      })
  );
}

/** Milliseconds from `start` (a performance.now() time) to now, to 0.1 ms, never negative. */
export function msSince(start) {
  return Math.max(0, Math.round((performance.now() - start) * 10) / 10);
}

/**
 * A screen's answer window. Until open(t), `t` being the RT zero, the controls are disabled and keys are
 * not listened to; close() answers once. Keys are heard on the document in the capture phase: wherever
 * focus is, and also the non-bubbling events jsPsych's simulation API dispatches. A key pressed with
 * Ctrl, Alt or Meta belongs to the browser and never reaches `onKey`.
 */
export function answerWindow({ controls, onKey = null }) {
  let start = null;
  let closed = false;
  const listener = (e) => {
    if (!(e.ctrlKey || e.metaKey || e.altKey)) onKey(e);
  };
  const setDisabled = (disabled) => {
    for (const control of controls) control.disabled = disabled;
  };
  const stopKeys = () => {
    if (onKey) document.removeEventListener("keydown", listener, true);
  };
  const isOpen = () => start !== null && !closed;
  return {
    isOpen,
    open(t) {
      if (closed) return;
      start = t;
      setDisabled(false);
      if (onKey) document.addEventListener("keydown", listener, true);
    },
    /** Milliseconds since the window opened (see msSince). */
    rt: () => msSince(start),
    /** The first call while open disables the controls, stops the keys and returns the RT; any other, null. */
    close() {
      if (!isOpen()) return null;
      const rt_ms = msSince(start);
      closed = true;
      stopKeys();
      setDisabled(true);
      return rt_ms;
    },
    /** Stop listening without an answer (the trial was cancelled). */
    stop() {
      closed = true;
      stopKeys();
    },
  };
}

/** A deep copy of plain data (objects, arrays, values), so a hook cannot change what the trial saves. */
function plainCopy(value) {
  if (Array.isArray(value)) return value.map(plainCopy);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainCopy(v)]));
  return value;
}

/**
 * The base of the image plugins. A plugin supplies trial(display_element, trial) (setting `this.ready` to
 * a promise of the moment answers open), answer(trial, data) (data as in its info; calls end()),
 * simulationDefaults(trial, randomization) and respondAs(display_element, data) for "visual" simulation.
 */
export class ImageScreenPlugin {
  constructor(jsPsych) {
    this.jsPsych = jsPsych;
    /** Resolves with the RT start time once the screen accepts answers. */
    this.ready = null;
    this.ended = false;
  }

  /** End the trial once: on_answer gets a copy of `answer` (a failing hook is logged), then jsPsych gets `data`. */
  end(trial, answer, data) {
    if (this.ended) return;
    this.ended = true;
    if (typeof trial.on_answer === "function") {
      try {
        trial.on_answer(plainCopy(answer));
      } catch (err) {
        console.error("on_answer hook failed", err);
      }
    }
    this.jsPsych.finishTrial(data);
  }

  simulate(trial, simulation_mode, simulation_options, load_callback) {
    if (simulation_mode === "visual") {
      // Not returned: a resolved promise would end the trial before the simulated answer.
      this.simulateVisual(trial, simulation_options, load_callback);
      return;
    }
    load_callback();
    this.answer(trial, this.createSimulationData(trial, simulation_options));
  }

  createSimulationData(trial, simulation_options) {
    const defaults = this.simulationDefaults(trial, this.jsPsych.randomization);
    return this.jsPsych.pluginAPI.mergeSimulationData(defaults, simulation_options);
  }

  async simulateVisual(trial, simulation_options, load_callback) {
    const display_element = this.jsPsych.getDisplayElement();
    const data = this.createSimulationData(trial, simulation_options);
    this.trial(display_element, trial);
    load_callback();
    await this.ready;
    this.respondAs(display_element, data);
  }
}
