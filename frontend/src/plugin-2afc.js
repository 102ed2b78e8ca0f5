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
import { ANSWER_DATA, ImageScreenPlugin, answerWindow, progressBar, screenParameters, whenPainted } from "./trial-screen.js";

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
    ...screenParameters("Image"),
  },
  /** choice: 0 = left option, 1 = right option; rt_ms: from the images being painted to the answer. */
  data: ANSWER_DATA,
};

export function renderTrialHtml(trial) {
  const [left, right] = trial.options;
  return `<div class="afc">
    ${progressBar(trial, "Image", "afc-progress")}
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

class Image2afcPlugin extends ImageScreenPlugin {
  static info = info;

  // Synchronous: jsPsych calls on_load itself after trial() returns.
  trial(display_element, trial) {
    display_element.innerHTML = renderTrialHtml(trial);
    const buttons = [...display_element.querySelectorAll("button.afc-option")];
    const images = [...display_element.querySelectorAll(".afc img")];
    const answers = answerWindow({
      controls: buttons,
      onKey: (e) => {
        const choice = e.repeat ? undefined : KEYS[String(e.key).toLowerCase()];
        if (choice === undefined) return;
        e.preventDefault();
        respond(choice);
      },
    });
    const respond = (choice) => {
      const rt_ms = answers.close();
      if (rt_ms === null) return;
      buttons[choice].classList.add("afc-chosen");
      this.answer(trial, { choice, rt_ms });
    };
    for (const button of buttons) {
      button.addEventListener("click", () => respond(Number(button.dataset.choice)));
    }
    this.ready = whenPainted(images).then((t) => {
      answers.open(t);
      return t;
    });
  }

  answer(trial, { choice, rt_ms }) {
    const data = { trial_id: trial.trial_id, choice, rt_ms };
    this.end(trial, data, data);
  }

  simulationDefaults(trial, random) {
    return {
      trial_id: trial.trial_id,
      choice: random.randomInt(0, 1),
      rt_ms: Math.round(random.sampleExGaussian(600, 80, 1 / 200, true)),
    };
  }

  respondAs(display_element, data) {
    // A short delay rather than the simulated RT, so tests stay fast.
    this.jsPsych.pluginAPI.pressKey(data.choice === 0 ? "f" : "j", Math.min(data.rt_ms, 5));
  }
}

export default Image2afcPlugin;
