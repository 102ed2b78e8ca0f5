// jsPsych 8 plugin: show a short message while an async task runs.
//
// Used for steps that talk to the server between screens (recording
// consent, saving answers and completing the session). The trial ends with
// the object the task resolves to (merged into the trial data). If the task
// throws, its message is shown (role=alert) and the trial does not end:
// there is nothing sensible to continue with.
//
// No `simulate` method: in simulation mode jsPsych runs trial() as usual,
// which is what we want (the task is not a participant response).

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

  trial(display_element, trial) {
    display_element.innerHTML = `<div class="task-screen"><div class="task-message" role="status">${trial.message}</div></div>`;
    const messageEl = display_element.querySelector(".task-message");
    const setMessage = (html) => {
      messageEl.innerHTML = html;
    };
    // Synchronous trial(): jsPsych calls on_load itself; we end via finishTrial.
    Promise.resolve()
      .then(() => trial.task({ display_element, setMessage }))
      .then(
        (result) => {
          this.jsPsych.finishTrial(result && typeof result === "object" ? { ...result } : {});
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
}

export default TaskPlugin;
