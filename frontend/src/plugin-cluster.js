// jsPsych 8 plugin: one clustering / matching screen as in Nanda et al. 2023.
//
// Three reference photos are the columns (A, B, C); each row shows one image
// and asks which reference it belongs with (one choice per row). Every row is
// a <fieldset> of three native radio inputs, so the screen is keyboard
// operable out of the box (Tab moves row to row, arrow keys choose within a
// row, Space selects) and each choice has an accessible name ("Photo A").
// "Next" is enabled once every row has a choice. On narrow screens the
// reference header sticks to the top while the rows scroll under it.
//
// RT is measured per row from the moment all images are painted (decode +
// next animation frame) to the row's last change of choice.
//
// Data: {trial_ids, choices, rts_ms, rt_ms (screen, to the click on Next)}.
// The `on_answer` hook gets [{trial_id, choice, rt_ms}, …] (one per row)
// right before the trial ends (also in simulation mode).

import { ParameterType } from "jspsych";
import { escapeHtml } from "./html.js";
import { ImageScreenPlugin, answerWindow, progressBar, screenParameters, whenPainted } from "./trial-screen.js";

export const CLUSTER_QUESTION = "Which photo does each image belong with? Choose one photo in every row.";
export const LETTERS = ["A", "B", "C", "D", "E", "F"];

const info = {
  name: "image-cluster",
  version: "1.0.0",
  parameters: {
    /** URLs of the reference photos (the columns), in order. */
    references: { type: ParameterType.IMAGE, array: true, default: undefined },
    /** Rows: [{trial_id, image}] — one opaque trial id and image URL per row. */
    items: { type: ParameterType.COMPLEX, array: true, default: undefined },
    question: { type: ParameterType.STRING, default: CLUSTER_QUESTION },
    /** Label of the continue button. */
    button_label: { type: ParameterType.STRING, default: "Next" },
    /** on_answer gets [{trial_id, choice, rt_ms}], one per row, when the participant clicks Next. */
    ...screenParameters("Set"),
  },
  data: {
    trial_ids: { type: ParameterType.STRING, array: true },
    choices: { type: ParameterType.INT, array: true },
    rts_ms: { type: ParameterType.FLOAT, array: true },
    rt_ms: { type: ParameterType.FLOAT },
  },
};

export function renderClusterHtml(trial) {
  const refs = trial.references;
  const letter = (k) => LETTERS[k] || String(k + 1);
  const header = refs
    .map(
      (src, k) => `<figure class="cluster-ref" data-ref="${k}">
        <img src="${escapeHtml(src)}" alt="Photo ${letter(k)}" draggable="false">
        <figcaption aria-hidden="true">${letter(k)}</figcaption>
      </figure>`
    )
    .join("");
  const rows = trial.items
    .map((item, r) => {
      const cells = refs
        .map(
          (_, k) => `<label class="cluster-choice">
            <input type="radio" name="cluster-row-${r}" value="${k}" data-row="${r}" data-choice="${k}" aria-label="Photo ${letter(k)}" disabled>
            <span class="cluster-choice-face" aria-hidden="true">${letter(k)}</span>
          </label>`
        )
        .join("");
      return `<fieldset class="cluster-row" data-row="${r}">
        <legend class="visually-hidden">Image ${r + 1} of ${trial.items.length}</legend>
        <div class="cluster-item"><img src="${escapeHtml(item.image)}" alt="Image ${r + 1}" draggable="false"></div>
        ${cells}
      </fieldset>`;
    })
    .join("");
  return `<div class="cluster" style="--cluster-cols:${refs.length}">
    ${progressBar(trial, "Set", "cluster-progress")}
    <p id="cluster-question" class="cluster-question">${escapeHtml(trial.question)}</p>
    <div class="cluster-grid" role="group" aria-labelledby="cluster-question">
      <div class="cluster-head"><div class="cluster-corner" aria-hidden="true"></div>${header}</div>
      ${rows}
    </div>
    <p class="cluster-status" id="cluster-status" aria-live="polite"></p>
    <button type="button" id="cluster-submit" class="jspsych-btn big-btn" disabled>${escapeHtml(trial.button_label)}</button>
  </div>`;
}

class ImageClusterPlugin extends ImageScreenPlugin {
  static info = info;

  trial(display_element, trial) {
    display_element.innerHTML = renderClusterHtml(trial);
    const n = trial.items.length;
    const inputs = [...display_element.querySelectorAll(".cluster-row input[type=radio]")];
    const submit = display_element.querySelector("#cluster-submit");
    const status = display_element.querySelector("#cluster-status");
    const images = [...display_element.querySelectorAll(".cluster img")];
    const choices = new Array(n).fill(null);
    const rts = new Array(n).fill(null);
    const answers = answerWindow({ controls: inputs });

    const update = () => {
      const missing = choices.filter((c) => c === null).length;
      submit.disabled = missing > 0 || !answers.isOpen();
      status.textContent = missing > 0 ? `${missing} of ${n} rows still to choose.` : "";
      for (const row of display_element.querySelectorAll(".cluster-row")) {
        row.classList.toggle("cluster-row-done", choices[Number(row.dataset.row)] !== null);
      }
    };

    for (const input of inputs) {
      input.addEventListener("change", () => {
        if (!answers.isOpen() || !input.checked) return;
        const r = Number(input.dataset.row);
        choices[r] = Number(input.dataset.choice);
        rts[r] = answers.rt();
        update();
      });
    }
    submit.addEventListener("click", () => {
      if (choices.some((c) => c === null)) return;
      const rt_ms = answers.close();
      if (rt_ms === null) return;
      submit.disabled = true;
      this.answer(trial, { choices, rts_ms: rts, rt_ms });
    });

    this.ready = whenPainted(images).then((t) => {
      answers.open(t);
      update();
      return t;
    });
  }

  answer(trial, { choices, rts_ms, rt_ms }) {
    const answers = trial.items.map((item, r) => ({ trial_id: item.trial_id, choice: choices[r], rt_ms: rts_ms[r] }));
    this.end(trial, answers, {
      trial_ids: answers.map((a) => a.trial_id),
      choices: [...choices],
      rts_ms: [...rts_ms],
      rt_ms,
    });
  }

  simulationDefaults(trial, random) {
    const k = trial.references.length;
    let t = 0;
    const rts_ms = trial.items.map(() => (t += Math.round(random.sampleExGaussian(900, 120, 1 / 300, true))));
    return {
      trial_ids: trial.items.map((i) => i.trial_id),
      choices: trial.items.map(() => random.randomInt(0, k - 1)),
      rts_ms,
      rt_ms: t + Math.round(random.sampleExGaussian(500, 80, 1 / 200, true)),
    };
  }

  respondAs(display_element, data) {
    data.choices.forEach((c, row) => {
      const input = display_element.querySelector(`input[data-row="${row}"][data-choice="${c}"]`);
      input.click(); // checks it and fires "change"
    });
    this.jsPsych.pluginAPI.clickTarget(display_element.querySelector("#cluster-submit"), 5);
  }
}

export default ImageClusterPlugin;
