// The shared part of the image plugins: painting, the answer window, the RT clock, ending the trial once,
// simulation; and the three real plugins measuring RT from the paint through it.
import { afterEach, describe, expect, it, vi } from "vitest";
import { initJsPsych } from "jspsych";
import { mountTargetEachTest, waitFor } from "./dom.js";
import Image2afcPlugin from "../src/plugin-2afc.js";
import ImageClusterPlugin from "../src/plugin-cluster.js";
import { ANSWER_DATA, ImageScreenPlugin, answerWindow, screenParameters, whenPainted } from "../src/trial-screen.js";

let target;
mountTargetEachTest((element) => {
  target = element;
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

/** A clock the test moves, and requestAnimationFrame callbacks that run only on frame(). */
function fakeClock(start = 5000) {
  let now = start;
  let queue = [];
  vi.stubGlobal("requestAnimationFrame", (cb) => queue.push(cb));
  vi.spyOn(performance, "now").mockImplementation(() => now);
  return {
    advance(ms) {
      now += ms;
    },
    frame() {
      const q = queue;
      queue = [];
      for (const cb of q) cb(now);
      return q.length;
    },
    pending: () => queue.length,
  };
}

const settle = () => new Promise((r) => setTimeout(r, 0));
const keydown = (key, init = {}) =>
  document.body.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...init }));

describe("whenPainted", () => {
  it("resolves at the first frame after every image is decoded, with that moment's clock", async () => {
    const clock = fakeClock();
    let decodeLast;
    const images = [{ decode: () => Promise.resolve() }, { decode: () => new Promise((r) => (decodeLast = r)) }, {}];
    let painted = null;
    whenPainted(images).then((t) => (painted = t));
    await settle();
    expect(clock.pending()).toBe(0); // still decoding: no frame asked for
    decodeLast();
    await settle();
    expect(clock.pending()).toBe(1);
    clock.advance(16);
    clock.frame();
    await settle();
    expect(painted).toBe(5016);
  });

  it("counts a failed decode as done rather than never showing the screen", async () => {
    const clock = fakeClock();
    let painted = null;
    whenPainted([{ decode: () => Promise.reject(new Error("EncodingError")) }]).then((t) => (painted = t));
    await settle();
    clock.frame();
    await settle();
    expect(painted).toBe(5000);
  });
});

describe("answerWindow", () => {
  it("keeps the controls disabled and the keys unheard until it opens, then times the answer from the opening", () => {
    const clock = fakeClock();
    const buttons = [document.createElement("button"), document.createElement("button")];
    buttons.forEach((b) => (b.disabled = true));
    const keys = [];
    const answers = answerWindow({ controls: buttons, onKey: (e) => keys.push(e.key) });

    keydown("f");
    expect(answers.close()).toBeNull(); // too early: not an answer
    expect(keys).toEqual([]);
    expect(buttons.every((b) => b.disabled)).toBe(true);

    answers.open(5100);
    expect(buttons.every((b) => !b.disabled)).toBe(true);
    keydown("f");
    keydown("j", { ctrlKey: true }); // the browser's, not the participant's answer
    keydown("j", { metaKey: true });
    keydown("j", { altKey: true });
    expect(keys).toEqual(["f"]);

    clock.advance(100 + 432.26);
    expect(answers.close()).toBe(432.3);
    expect(buttons.every((b) => b.disabled)).toBe(true);
    expect(answers.close()).toBeNull(); // the first answer was the answer
    keydown("j");
    expect(keys).toEqual(["f"]);
  });

  it("never gives a negative RT, and stop() ends the listening without an answer", () => {
    fakeClock(1000);
    const answers = answerWindow({ controls: [], onKey: () => {} });
    answers.open(1000.4);
    expect(answers.rt()).toBe(0);
    answers.stop();
    expect(answers.isOpen()).toBe(false);
    expect(answers.close()).toBeNull();
    answers.open(2000); // too late: a stopped window stays shut
    expect(answers.isOpen()).toBe(false);
  });
});

/** A toy screen with one button, to drive the shared base directly. */
class OneButtonPlugin extends ImageScreenPlugin {
  static info = {
    name: "one-button",
    version: "0.0.0",
    parameters: { trial_id: { default: "t" }, ...screenParameters("Step") },
    data: ANSWER_DATA,
  };

  trial(display_element, trial) {
    display_element.innerHTML = '<button id="only" disabled>Go</button>';
    const button = display_element.querySelector("#only");
    const answers = answerWindow({ controls: [button] });
    // Deliberately no guard of its own: ending once is the base's job.
    button.addEventListener("click", () => this.answer(trial, { choice: 0, rt_ms: answers.rt() }));
    this.ready = Promise.resolve(performance.now()).then((t) => {
      answers.open(t);
      return t;
    });
  }

  answer(trial, { choice, rt_ms }) {
    const data = { trial_id: trial.trial_id, choice, rt_ms, nested: { kept: true } };
    this.end(trial, data, data);
  }

  simulationDefaults(trial) {
    return { trial_id: trial.trial_id, choice: 0, rt_ms: 250 };
  }

  respondAs(display_element) {
    this.jsPsych.pluginAPI.clickTarget(display_element.querySelector("#only"), 1);
  }
}

describe("ImageScreenPlugin", () => {
  it("calls on_answer once, with a copy, however often the plugin tries to end the trial", async () => {
    const calls = [];
    const jsPsych = initJsPsych({ display_element: target });
    const done = jsPsych.run([
      {
        type: OneButtonPlugin,
        on_answer: (a) => {
          calls.push(a);
          a.nested.kept = false; // a hook that scribbles on its argument changes nothing saved
        },
      },
    ]);
    const button = await waitFor(() => target.querySelector("#only:not([disabled])"));
    button.click();
    button.click();
    await done;
    expect(calls).toHaveLength(1);
    expect(jsPsych.data.get().values()).toHaveLength(1);
    expect(jsPsych.data.get().values()[0].nested).toEqual({ kept: true });
  });

  it("ends the trial even when the on_answer hook throws", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const jsPsych = initJsPsych({ display_element: target });
    const done = jsPsych.run([
      {
        type: OneButtonPlugin,
        on_answer: () => {
          throw new Error("outbox full");
        },
      },
    ]);
    (await waitFor(() => target.querySelector("#only:not([disabled])"))).click();
    await done;
    expect(jsPsych.data.get().values()[0].choice).toBe(0);
    expect(logged).toHaveBeenCalledWith("on_answer hook failed", expect.any(Error));
  });

  it.each(["data-only", "visual"])("simulates in %s mode through the plugin's own answer", async (mode) => {
    const calls = [];
    const jsPsych = initJsPsych({ display_element: target });
    await jsPsych.simulate([{ type: OneButtonPlugin, trial_id: "sim", on_answer: (a) => calls.push(a) }], mode);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ trial_id: "sim", choice: 0 });
    if (mode === "data-only") expect(calls[0].rt_ms).toBe(250);
  });
});

describe("the plugins measure RT from the paint", () => {
  it("2AFC: from the frame after the images are decoded to the key press", async () => {
    const clock = fakeClock();
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    const done = jsPsych.run([
      { type: Image2afcPlugin, trial_id: "t1", query: "/q", options: ["/a", "/b"], on_answer: (a) => answers.push(a) },
    ]);
    await waitFor(() => clock.pending() > 0);
    clock.advance(400); // decoding and waiting for the frame do not count
    keydown("f"); // before the paint: nothing
    clock.frame();
    await waitFor(() => target.querySelector('button[data-choice="1"]:not([disabled])'));
    clock.advance(812.34);
    keydown("j");
    keydown("j", { repeat: true });
    await done;
    expect(answers).toEqual([{ trial_id: "t1", choice: 1, rt_ms: 812.3 }]);
  });

  it("clustering: each row's RT and the screen's RT count from the paint", async () => {
    const clock = fakeClock();
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    const done = jsPsych.run([
      {
        type: ImageClusterPlugin,
        references: ["/r0", "/r1", "/r2"],
        items: [
          { trial_id: "a", image: "/a" },
          { trial_id: "b", image: "/b" },
        ],
        on_answer: (a) => answers.push(...a),
      },
    ]);
    await waitFor(() => clock.pending() > 0);
    clock.advance(250);
    clock.frame();
    await waitFor(() => target.querySelector('input[data-row="0"][data-choice="0"]:not([disabled])'));
    clock.advance(1000);
    target.querySelector('input[data-row="0"][data-choice="2"]').click();
    clock.advance(500);
    target.querySelector('input[data-row="1"][data-choice="0"]').click();
    clock.advance(300);
    const next = target.querySelector("#cluster-submit");
    next.click();
    next.click();
    await done;
    expect(answers).toEqual([
      { trial_id: "a", choice: 2, rt_ms: 1000 },
      { trial_id: "b", choice: 0, rt_ms: 1500 },
    ]);
    expect(jsPsych.data.get().values()[0].rt_ms).toBe(1800);
  });
});
