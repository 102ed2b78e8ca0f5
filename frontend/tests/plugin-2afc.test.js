import { describe, expect, it } from "vitest";
import { mountTargetEachTest, waitFor } from "./dom.js";
import { initJsPsych } from "jspsych";
import Image2afcPlugin, { QUESTION } from "../src/plugin-2afc.js";

const ROLE_WORDS = /target|seed|iri|catch/i;

let target;
mountTargetEachTest((element) => {
  target = element;
});

const TRIAL = {
  type: Image2afcPlugin,
  trial_id: "t_abc123",
  query: "/media/img/ab/abcd0001.png",
  options: ["/media/img/cd/cdef0002.png", "/media/img/ef/ef010003.png"],
  progress_current: 3,
  progress_total: 10,
};

/** Start a single 2AFC trial, wait until it accepts answers, return {jsPsych, done, answers}. */
async function startTrial(extra = {}) {
  const answers = [];
  const jsPsych = initJsPsych({ display_element: target });
  const done = jsPsych.run([{ ...TRIAL, on_answer: (a) => answers.push(a), ...extra }]);
  await waitFor(() => target.querySelector('button[data-choice="0"]:not([disabled])'));
  return { jsPsych, done, answers };
}

const press = (key) => document.body.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true }));

describe("2AFC plugin", () => {
  it("renders query, two labelled option buttons in order, question and progress", async () => {
    const { jsPsych, done } = await startTrial();
    const el = jsPsych.getDisplayElement();
    expect(el.querySelector("#afc-query-img").getAttribute("src")).toBe(TRIAL.query);
    const buttons = [...el.querySelectorAll("button")];
    expect(buttons.map((b) => b.dataset.choice)).toEqual(["0", "1"]);
    expect(buttons.map((b) => b.getAttribute("aria-label"))).toEqual(["Left image (F)", "Right image (J)"]);
    expect(buttons.map((b) => b.querySelector("img").getAttribute("src"))).toEqual(TRIAL.options);
    expect(buttons.every((b) => b.type === "button" && !b.hasAttribute("tabindex"))).toBe(true);
    expect(el.textContent).toContain(QUESTION);
    expect(el.querySelector("#afc-progress-text").textContent).toBe("Image 3 of 10");
    press("f");
    await done;
  });

  it("contains no role words anywhere in the rendered trial", async () => {
    const { jsPsych, done } = await startTrial();
    const html = jsPsych.getDisplayElement().innerHTML;
    expect(html).not.toMatch(ROLE_WORDS);
    expect(target.outerHTML.replace('id="jspsych-target"', "")).not.toMatch(ROLE_WORDS);
    press("j");
    await done;
    const data = jsPsych.data.get().values()[0];
    expect(JSON.stringify(data)).not.toMatch(ROLE_WORDS);
  });

  it.each([
    ["f", 0],
    ["F", 0],
    ["j", 1],
    ["J", 1],
  ])("key %s chooses option %i", async (key, choice) => {
    const { jsPsych, done, answers } = await startTrial();
    press("x"); // ignored
    press(key);
    await done;
    const data = jsPsych.data.get().values()[0];
    expect(data.choice).toBe(choice);
    expect(data.trial_id).toBe("t_abc123");
    expect(typeof data.rt_ms).toBe("number");
    expect(data.rt_ms).toBeGreaterThanOrEqual(0);
    expect(answers).toEqual([{ trial_id: "t_abc123", choice, rt_ms: data.rt_ms }]);
  });

  it.each([0, 1])("clicking option %i chooses it", async (choice) => {
    const { jsPsych, done, answers } = await startTrial();
    target.querySelector(`button[data-choice="${choice}"]`).click();
    await done;
    const data = jsPsych.data.get().values()[0];
    expect(data.choice).toBe(choice);
    expect(data.rt_ms).toBeGreaterThanOrEqual(0);
    expect(answers).toHaveLength(1);
  });

  it("accepts only the first answer", async () => {
    const { done, answers } = await startTrial();
    const left = target.querySelector('button[data-choice="0"]');
    left.click();
    press("j");
    left.click();
    await done;
    expect(answers).toHaveLength(1);
    expect(answers[0].choice).toBe(0);
  });

  it("ignores answers before the images are painted", async () => {
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    const done = jsPsych.run([{ ...TRIAL, on_answer: (a) => answers.push(a) }]);
    await new Promise((r) => setTimeout(r, 0));
    press("f"); // before requestAnimationFrame fired: buttons disabled, keys not listened to
    expect(answers).toHaveLength(0);
    await waitFor(() => target.querySelector('button[data-choice="1"]:not([disabled])'));
    press("j");
    await done;
    expect(answers.map((a) => a.choice)).toEqual([1]);
  });

  it("simulates in data-only mode, honouring simulation data", async () => {
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    await jsPsych.simulate([{ ...TRIAL, on_answer: (a) => answers.push(a), simulation_options: { data: { choice: 1, rt_ms: 432 } } }], "data-only");
    expect(answers).toEqual([{ trial_id: "t_abc123", choice: 1, rt_ms: 432 }]);
  });

  it("simulates in visual mode by pressing the key", async () => {
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    await jsPsych.simulate([{ ...TRIAL, on_answer: (a) => answers.push(a), simulation_options: { data: { choice: 0 } } }], "visual");
    expect(answers).toHaveLength(1);
    expect(answers[0].choice).toBe(0);
    expect(answers[0].rt_ms).toBeGreaterThanOrEqual(0);
  });
});
