import { describe, expect, it } from "vitest";
import { mountTargetEachTest, waitFor } from "./dom.js";
import { initJsPsych } from "jspsych";
import ImageClusterPlugin, { CLUSTER_QUESTION } from "../src/plugin-cluster.js";

const ROLE_WORDS = /target|seed|iri|catch|correct/i;

let target;
mountTargetEachTest((element) => {
  target = element;
});

const TRIAL = {
  type: ImageClusterPlugin,
  references: ["/i/ref0", "/i/ref1", "/i/ref2"],
  items: Array.from({ length: 6 }, (_, r) => ({ trial_id: `row${r}`, image: `/i/q${r}` })),
  progress_current: 2,
  progress_total: 5,
};

async function startTrial(extra = {}) {
  const answers = [];
  const jsPsych = initJsPsych({ display_element: target });
  const done = jsPsych.run([{ ...TRIAL, on_answer: (a) => answers.push(...a), ...extra }]);
  await waitFor(() => target.querySelector('input[data-row="0"][data-choice="0"]:not([disabled])'));
  return { jsPsych, done, answers };
}

const choose = (row, k) => target.querySelector(`input[data-row="${row}"][data-choice="${k}"]`).click();

describe("clustering plugin", () => {
  it("shows the references as labelled columns and one radio group per row, in reading (focus) order", async () => {
    const { done } = await startTrial();
    expect(target.querySelector("#cluster-question").textContent).toBe(CLUSTER_QUESTION);
    expect(target.querySelector("#cluster-progress-text").textContent).toBe("Set 2 of 5");
    expect([...target.querySelectorAll(".cluster-ref img")].map((i) => [i.getAttribute("src"), i.alt])).toEqual([
      ["/i/ref0", "Photo A"],
      ["/i/ref1", "Photo B"],
      ["/i/ref2", "Photo C"],
    ]);
    // Focusable controls in DOM order: row by row, A B C, then Next; nothing has a positive tabindex.
    const focusable = [...target.querySelectorAll("input, button")];
    expect(focusable.map((e) => (e.tagName === "BUTTON" ? e.id : `${e.dataset.row}${e.dataset.choice}`))).toEqual([
      ..."000102101112202122303132404142505152".match(/../g),
      "cluster-submit",
    ]);
    expect(target.querySelectorAll("[tabindex]").length).toBe(0);
    for (const fs of target.querySelectorAll("fieldset.cluster-row")) expect(fs.querySelector("legend").textContent).toMatch(/^Image \d of 6$/);
    expect(target.innerHTML.replace(/cluster-row|data-row/g, "")).not.toMatch(ROLE_WORDS);
    [0, 1, 2, 0, 1, 2].forEach((k, r) => choose(r, k));
    target.querySelector("#cluster-submit").click();
    await done;
  });

  it("enables Next only when every row has a choice; the last choice of a row counts", async () => {
    const { jsPsych, done, answers } = await startTrial();
    const next = target.querySelector("#cluster-submit");
    for (let r = 0; r < 5; r++) choose(r, 0);
    expect(next.disabled).toBe(true);
    expect(target.querySelector("#cluster-status").textContent).toBe("1 of 6 rows still to choose.");
    next.click(); // ignored while disabled
    choose(5, 2);
    choose(0, 1); // change of mind
    expect(next.disabled).toBe(false);
    next.click();
    await done;
    expect(answers.map((a) => [a.trial_id, a.choice])).toEqual([
      ["row0", 1],
      ["row1", 0],
      ["row2", 0],
      ["row3", 0],
      ["row4", 0],
      ["row5", 2],
    ]);
    const data = jsPsych.data.get().values()[0];
    expect(data.choices).toEqual([1, 0, 0, 0, 0, 2]);
    for (const a of answers) expect(a.rt_ms).toBeLessThanOrEqual(data.rt_ms);
    expect(JSON.stringify(data)).not.toMatch(ROLE_WORDS);
  });

  it("simulates in data-only mode, honouring simulation data", async () => {
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    const choices = [2, 2, 1, 1, 0, 0];
    await jsPsych.simulate([{ ...TRIAL, on_answer: (a) => answers.push(...a), simulation_options: { data: { choices } } }], "data-only");
    expect(answers.map((a) => a.choice)).toEqual(choices);
    expect(answers.map((a) => a.trial_id)).toEqual(TRIAL.items.map((i) => i.trial_id));
  });

  it("simulates in visual mode by choosing every row and clicking Next", async () => {
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    const choices = [0, 1, 2, 0, 1, 2];
    await jsPsych.simulate([{ ...TRIAL, on_answer: (a) => answers.push(...a), simulation_options: { data: { choices } } }], "visual");
    expect(answers.map((a) => a.choice)).toEqual(choices);
    for (const a of answers) expect(a.rt_ms).toBeGreaterThanOrEqual(0);
  });
});
