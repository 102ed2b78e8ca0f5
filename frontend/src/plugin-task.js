// jsPsych 8 plugin: show a short message while an async task runs.
//
// Used for steps that talk to the server between screens (recording
// consent, saving answers and completing the session). The trial ends with
// the object the task resolves to (merged into the trial data). If the task
// throws, its message is shown (role=alert) and the trial does not end:
// there is nothing sensible to continue with.
//
// With `render` set, the resolved result is shown as HTML (render(result))
// with a continue button (`button_id`, `button_label`) and the trial ends on
// its click: used for practice feedback. In simulation mode the task runs for
// real (it is not a participant response); the continue button is clicked
// after 1 ms in "visual" mode and skipped in "data-only" mode.

import { ParameterType } from "jspsych";
import { escapeHtml } from "./html.js";

const info = {
  name: "async-task",
  version: "1.0.0",
  parameters: {
    /** HTML shown while the task runs. */
    message: { type: ParameterType.HTML_STRING, default: "" },
    /** async ({display_element, setMessage}) => object|undefined */
    task: { type: ParameterType.FUNCTION, default: undefined },
    /** (result) => HTML shown after the task; null = end as soon as the task is done. */
    render: { type: ParameterType.FUNCTION, default: null },
    button_label: { type: ParameterType.STRING, default: "Continue" },
    button_id: { type: ParameterType.STRING, default: "task-continue" },
    /** Called when the trial starts (e.g. to tell the quality log the stage). */
    on_begin: { type: ParameterType.FUNCTION, default: null },
  },
  data: {
    /** Whatever fields the task resolved to are added to the trial data. */
  },
};

class TaskPlugin {
  static info = info;

  constructor(jsPsych) {
    this.jsPsych = jsPsych;
  }

  trial(display_element, trial, on_load, simulation = null) {
    display_element.innerHTML = `<div class="task-screen"><div class="task-message" role="status">${trial.message}</div></div>`;
    const messageEl = display_element.querySelector(".task-message");
    const setMessage = (html) => {
      messageEl.innerHTML = html;
    };
    if (typeof trial.on_begin === "function") trial.on_begin();
    // Synchronous trial(): jsPsych calls on_load itself; we end via finishTrial.
    Promise.resolve()
      .then(() => trial.task({ display_element, setMessage }))
      .then(
        (result) => {
          const data = result && typeof result === "object" ? { ...result } : {};
          if (typeof trial.render !== "function") return this.jsPsych.finishTrial(data);
          if (simulation === "data-only") return this.jsPsych.finishTrial(data);
          display_element.innerHTML = `<div class="task-screen">${trial.render(result)}
            <p><button type="button" id="${escapeHtml(trial.button_id)}" class="jspsych-btn big-btn">${escapeHtml(
              trial.button_label
            )}</button></p></div>`;
          const button = display_element.querySelector("button");
          button.addEventListener("click", () => this.jsPsych.finishTrial(data), { once: true });
          button.focus();
          if (simulation === "visual") this.jsPsych.pluginAPI.clickTarget(button, 1);
        },
        (err) => {
          console.error(err);
          display_element.innerHTML = `<div class="task-screen"><p class="error-message" role="alert">${escapeHtml(
            (err && err.message) || "Something went wrong."
          )}</p></div>`;
          // The trial never ends: the experiment stops here with the message shown.
        }
      );
  }

  simulate(trial, simulation_mode, simulation_options, load_callback) {
    this.trial(this.jsPsych.getDisplayElement(), trial, undefined, simulation_mode);
    load_callback();
  }
}

export default TaskPlugin;
