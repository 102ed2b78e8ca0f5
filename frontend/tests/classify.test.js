// Timed classification: the plugin's frame-counted presentation under a fake 60 Hz requestAnimationFrame,
// its keyboard grid, and whole sessions (practice → screening → main) against the fake API.
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { initJsPsych } from "jspsych";
import { mountTargetEachTest, waitFor } from "./dom.js";
import { CATEGORIES, CONFIG, createFakeServer, simulateSurvey } from "./fake-server.js";
import ImageClassifyPlugin from "../src/plugin-classify.js";
import { estimateRefreshRate, framesFor, hzFromTimestamps } from "../src/frame-timing.js";
import { saysEnded } from "../src/session-calls.js";
import { classificationSettings } from "../src/timeline.js";

const TIMING_KEYS = ["frames", "image_offset_ms", "image_onset_ms", "refresh_hz", "shown_ms"];
const ROLE_WORDS = /target|seed|iri|catch|correct|screen(ing|ed)/i;

let target;
mountTargetEachTest((element) => {
  target = element;
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

/**
 * A display at `hz`: requestAnimationFrame callbacks run only on tick(), each tick one frame later, and
 * performance.now() reads the same clock.
 */
function fakeDisplay(hz = 60) {
  const frame = 1000 / hz;
  let now = 1000;
  let queue = [];
  let nextId = 0;
  vi.stubGlobal("requestAnimationFrame", (cb) => {
    queue.push({ id: ++nextId, cb });
    return nextId;
  });
  vi.stubGlobal("cancelAnimationFrame", (id) => {
    queue = queue.filter((q) => q.id !== id);
  });
  vi.spyOn(performance, "now").mockImplementation(() => now);
  return {
    frame,
    get now() {
      return now;
    },
    pending: () => queue.length,
    /** Advance one frame and run the callbacks queued for it; returns the frame's timestamp. */
    tick() {
      now += frame;
      const q = queue;
      queue = [];
      for (const { cb } of q) cb(now);
      return now;
    },
    wait(ms) {
      now += ms;
    },
  };
}

const TRIAL = {
  type: ImageClassifyPlugin,
  trial_id: "t_001",
  query: "/media/img/ab/00000001.png",
  mask: "/media/img/mk/00000002.png",
  categories: CATEGORIES,
  fixation_ms: 300,
  image_ms: 300,
  mask_ms: 300,
  refresh_hz: 60,
};

/** Start one trial; resolves once its rAF loop waits for the first frame. */
async function start(display, extra = {}) {
  const answers = [];
  const jsPsych = initJsPsych({ display_element: target });
  const done = jsPsych.run([{ ...TRIAL, on_answer: (a) => answers.push(a), ...extra }]);
  await waitFor(() => display.pending() > 0);
  return { jsPsych, done, answers };
}

const phase = () => target.querySelector("#classify-stage").dataset.phase;
const visible = () =>
  [".classify-fixation", ".classify-image", ".classify-mask"]
    .filter((sel) => target.querySelector(sel) && !target.querySelector(sel).hidden)
    .join(",");
const choiceButtons = () => [...target.querySelectorAll("button.classify-choice")];
const keydown = (key, el = document.activeElement || document.body) =>
  el.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true }));

/** Tick until the buttons are up; returns [[phase, frames], …] as run lengths. */
function runToResponse(display, max = 400) {
  const runs = [];
  for (let i = 0; i < max && phase() !== "response" && phase() !== "image-response"; i++) {
    display.tick();
    const p = phase();
    if (runs.length && runs[runs.length - 1][0] === p) runs[runs.length - 1][1]++;
    else runs.push([p, 1]);
  }
  return runs;
}

describe("image-classify plugin at a fake 60 Hz", () => {
  it("shows fixation, image, mask for 18 frames each, then the buttons; nothing answers before them", async () => {
    const display = fakeDisplay(60);
    const { jsPsych, done, answers } = await start(display);
    expect(choiceButtons().every((b) => b.disabled)).toBe(true);
    expect(target.querySelector("#classify-response").hidden).toBe(true);

    const seen = [];
    const runs = [];
    let onset = null;
    let offset = null;
    for (let i = 0; i < 100 && phase() !== "response"; i++) {
      const t = display.tick();
      const p = phase();
      if (p === "image" && onset === null) onset = t;
      if (p === "mask" && offset === null) offset = t;
      if (!runs.length || runs[runs.length - 1][0] !== p) {
        runs.push([p, 1]);
        seen.push(visible());
      } else runs[runs.length - 1][1]++;
      if (p !== "response") {
        // Before the buttons: clicks and keys do nothing.
        choiceButtons()[3].click();
        keydown("Enter", document.body);
        expect(choiceButtons().every((b) => b.disabled)).toBe(true);
      }
    }
    expect(runs).toEqual([
      ["fixation", 18],
      ["image", 18],
      ["mask", 18],
      ["response", 1],
    ]);
    // One layer at a time, then an empty stage under the buttons.
    expect(seen).toEqual([".classify-fixation", ".classify-image", ".classify-mask", ""]);
    expect(target.querySelector("#classify-response").hidden).toBe(false);
    expect(choiceButtons().every((b) => !b.disabled)).toBe(true);
    expect(answers).toHaveLength(0);

    const shownAt = display.now;
    display.wait(640);
    choiceButtons()[7].click();
    await done;
    const data = jsPsych.data.get().values()[0];
    expect(data.choice).toBe(7);
    expect(data.category).toBe("cat");
    expect(data.rt_ms).toBeCloseTo(display.now - shownAt, 1);
    expect(Object.keys(data.timing).sort()).toEqual(TIMING_KEYS);
    expect(data.timing.image_onset_ms).toBeCloseTo(onset, 1);
    expect(data.timing.image_offset_ms).toBeCloseTo(offset, 1);
    expect(data.timing.shown_ms).toBeCloseTo(300, 1);
    expect(data.timing.frames).toBe(18);
    expect(data.timing.refresh_hz).toBe(60);
    expect(answers).toEqual([{ trial_id: "t_001", choice: 7, rt_ms: data.rt_ms, timing: data.timing }]);
  });

  it.each([
    [300, 60, 18],
    [100, 60, 6],
    [50, 60, 3],
    [25, 60, 2],
    [300, 144, 43],
    [200, 75, 15],
  ])("image_ms %i at %i Hz stays up for exactly %i frames", async (image_ms, hz, frames) => {
    expect(framesFor(image_ms, hz)).toBe(frames);
    const display = fakeDisplay(hz);
    const { jsPsych, done } = await start(display, { image_ms, refresh_hz: hz, fixation_ms: 100, mask_ms: 100 });
    const runs = runToResponse(display);
    expect(runs.find(([p]) => p === "image")).toEqual(["image", frames]);
    choiceButtons()[0].click();
    await done;
    const { timing } = jsPsych.data.get().values()[0];
    expect(timing.frames).toBe(frames);
    expect(timing.shown_ms).toBeCloseTo((frames * 1000) / hz, 1);
  });

  it("counts frames by their timestamps: a dropped frame mid-image changes nothing, a late last frame is measured", async () => {
    const display = fakeDisplay(60);
    let { jsPsych, done } = await start(display, { fixation_ms: 0, mask_ms: 100 });
    display.tick(); // image onset
    expect(phase()).toBe("image");
    display.wait(display.frame); // the browser skipped a frame: 17 callbacks, still 18 frames of time
    runToResponse(display);
    choiceButtons()[1].click();
    await done;
    expect(jsPsych.data.get().values()[0].timing).toMatchObject({ frames: 18, shown_ms: 300 });

    ({ jsPsych, done } = await start(display, { fixation_ms: 0, mask_ms: 100 }));
    for (let i = 0; i < 18; i++) display.tick(); // onset + 17 frames
    expect(phase()).toBe("image");
    display.wait(display.frame); // the frame that would end it comes one frame late
    runToResponse(display);
    choiceButtons()[1].click();
    await done;
    const { timing } = jsPsych.data.get().values()[0];
    expect(timing.frames).toBe(19);
    expect(timing.shown_ms).toBeCloseTo(19 * display.frame, 1);
  });

  it("image_ms null keeps the image up, with the buttons, until the answer; offset is the next frame", async () => {
    const display = fakeDisplay(60);
    const { jsPsych, done, answers } = await start(display, { image_ms: null });
    const runs = runToResponse(display);
    expect(runs).toEqual([
      ["fixation", 18],
      ["image-response", 1],
    ]);
    const onset = display.now;
    expect(visible()).toBe(".classify-image");
    expect(choiceButtons().every((b) => !b.disabled)).toBe(true);
    for (let i = 0; i < 120; i++) display.tick(); // two seconds: still up, no mask
    expect(visible()).toBe(".classify-image");
    choiceButtons()[2].click();
    expect(answers).toHaveLength(0); // waits for the frame that takes the image away
    const offset = display.tick();
    await done;
    const data = jsPsych.data.get().values()[0];
    expect(data.choice).toBe(2);
    expect(data.rt_ms).toBeCloseTo(120 * display.frame, 1);
    expect(data.timing.image_onset_ms).toBeCloseTo(onset, 1);
    expect(data.timing.image_offset_ms).toBeCloseTo(offset, 1);
    expect(data.timing.frames).toBe(121);
    expect(data.timing.shown_ms).toBeCloseTo(121 * display.frame, 1);
  });

  it("arrow keys move focus across the grid; Enter chooses the focused category", async () => {
    const display = fakeDisplay(60);
    const { jsPsych, done } = await start(display);
    runToResponse(display);
    // Focus is on the group: no category looks chosen, the arrows work at once.
    expect(document.activeElement.id).toBe("classify-choices");
    const focused = () => Number(document.activeElement.dataset.choice);
    keydown("ArrowRight");
    expect(focused()).toBe(0);
    keydown("ArrowRight");
    keydown("ArrowRight");
    expect(focused()).toBe(2);
    keydown("ArrowDown"); // no layout in jsdom: 4 columns
    expect(focused()).toBe(6);
    keydown("ArrowLeft");
    expect(focused()).toBe(5);
    keydown("ArrowUp");
    expect(focused()).toBe(1);
    keydown("ArrowUp"); // top row: stays
    expect(focused()).toBe(1);
    keydown("End");
    expect(focused()).toBe(15);
    keydown("ArrowRight"); // last: stays
    expect(focused()).toBe(15);
    keydown("Home");
    expect(focused()).toBe(0);
    keydown("k"); // type-ahead: the next category starting with k
    expect(CATEGORIES[focused()]).toBe("keyboard");
    keydown("k");
    expect(CATEGORIES[focused()]).toBe("knife");
    // Roving tabindex: only the focused button is in the Tab order.
    expect(choiceButtons().filter((b) => b.tabIndex === 0).map((b) => Number(b.dataset.choice))).toEqual([13]);
    keydown("ArrowLeft");
    keydown("Enter");
    await done;
    expect(jsPsych.data.get().values()[0]).toMatchObject({ choice: 12, category: "keyboard" });
  });

  it("Space chooses too, and only the first answer counts", async () => {
    const display = fakeDisplay(60);
    const { done, answers } = await start(display);
    runToResponse(display);
    keydown("ArrowRight");
    keydown("ArrowRight");
    keydown(" ");
    keydown("Enter");
    choiceButtons()[9].click();
    await done;
    expect(answers.map((a) => a.choice)).toEqual([1]);
  });

  it("renders one button per category in a grid, in the categories' order (20 → 20)", async () => {
    const cats = [...CATEGORIES, "tree", "house", "horse", "flower"];
    const display = fakeDisplay(60);
    const { done } = await start(display, { categories: cats });
    const grid = target.querySelector(".classify-choices");
    expect(grid.getAttribute("role")).toBe("group");
    expect(grid.getAttribute("aria-labelledby")).toBe("classify-question");
    const buttons = choiceButtons();
    expect(buttons).toHaveLength(20);
    expect(buttons.map((b) => b.textContent)).toEqual(cats);
    expect(buttons.map((b) => b.dataset.choice)).toEqual(cats.map((_, k) => String(k)));
    expect(buttons.every((b) => b.type === "button" && b.classList.contains("classify-choice"))).toBe(true);
    // Nothing in the markup tells which category is right or what kind of trial this is.
    expect(target.innerHTML.replace(/classify-\w+/g, "")).not.toMatch(ROLE_WORDS);
    runToResponse(display);
    buttons[19].click();
    await done;
  });

  it("the stylesheet centres the buttons in rows that fit a 360 px phone, and never breaks a word", () => {
    const css = readFileSync(`${process.cwd()}/src/participant.css`, "utf8");
    const rule = (sel, from = css) => {
      const m = from.match(new RegExp(`(^|\\n)\\s*${sel.replace(/[.[\]]/g, "\\$&")}\\s*\\{([^}]*)\\}`));
      return m ? m[2] : "";
    };
    const grid = rule(".classify-choices");
    expect(grid).toMatch(/display:\s*flex/);
    expect(grid).toMatch(/flex-wrap:\s*wrap/);
    expect(grid).toMatch(/justify-content:\s*center/); // centred under the image, the last row too
    const button = rule(".classify-choice");
    // Text wraps between words only: no rule that lets a word break, and no fixed width below its length.
    expect(button).toMatch(/overflow-wrap:\s*normal/);
    expect(button).toMatch(/word-break:\s*normal/);
    expect(button).toMatch(/hyphens:\s*manual/);
    expect(button).not.toMatch(/(^|[^-])(min-)?width:\s*0/);
    expect(button).toMatch(/min-height:\s*2\.\d+rem/);
    // Phones: 4 a row (the basis leaves room for the 3 gaps).
    const phone = css.slice(css.lastIndexOf("@media (max-width: 480px)"));
    const gap = Number(grid.match(/gap:\s*([\d.]+)rem/)[1]);
    expect(rule(".classify-choice", phone)).toMatch(new RegExp(`flex-basis:\\s*calc\\(\\(100% - 3 \\* ${gap}rem\\) / 4\\)`));
    expect(css).toMatch(/\.classify-stage\s*\{[^}]*(width|height):\s*min\(/);
  });

  it("simulates in data-only mode with plausible timing", async () => {
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    await jsPsych.simulate(
      [
        { ...TRIAL, refresh_hz: 59.94, on_answer: (a) => answers.push(a) },
        { ...TRIAL, image_ms: null, on_answer: (a) => answers.push(a), simulation_options: { data: { choice: 4 } } },
      ],
      "data-only"
    );
    expect(answers).toHaveLength(2);
    const [a, b] = answers;
    expect(Object.keys(a.timing).sort()).toEqual(TIMING_KEYS);
    expect(a.timing.frames).toBe(18);
    expect(a.timing.refresh_hz).toBe(59.94);
    expect(a.timing.shown_ms).toBeCloseTo((18 * 1000) / 59.94, 1);
    expect(a.timing.image_offset_ms - a.timing.image_onset_ms).toBeCloseTo(a.timing.shown_ms, 1);
    expect(a.choice).toBeGreaterThanOrEqual(0);
    expect(a.choice).toBeLessThan(16);
    expect(b.choice).toBe(4);
    expect(b.timing.frames).toBeGreaterThan(1);
  });

  it("simulates in visual mode by running the frames and clicking a button", async () => {
    const display = fakeDisplay(60);
    const answers = [];
    const jsPsych = initJsPsych({ display_element: target });
    const done = jsPsych.simulate([{ ...TRIAL, on_answer: (a) => answers.push(a), simulation_options: { data: { choice: 11 } } }], "visual");
    await waitFor(() => display.pending() > 0);
    runToResponse(display);
    await done;
    expect(answers).toHaveLength(1);
    expect(answers[0].choice).toBe(11);
    expect(answers[0].timing.frames).toBe(18);
  });
});

describe("refresh-rate estimate", () => {
  it("is the median of 20 rAF intervals", async () => {
    const display = fakeDisplay(60);
    const p = estimateRefreshRate();
    for (let i = 0; i < 25; i++) {
      if (i === 7) display.wait(40); // one slow frame does not move the median
      display.tick();
      await Promise.resolve();
    }
    expect(await p).toBe(60);
  });

  it("hzFromTimestamps: 120 Hz, too few intervals, implausible rates", () => {
    const at = (hz, n) => Array.from({ length: n }, (_, i) => 5 + (i * 1000) / hz);
    expect(hzFromTimestamps(at(120, 21))).toBe(120);
    expect(hzFromTimestamps(at(60, 4))).toBeNull();
    expect(hzFromTimestamps(at(5, 21))).toBeNull();
  });

  it("gives up with what it has after the time limit (e.g. a hidden tab), or null without rAF", async () => {
    vi.stubGlobal("requestAnimationFrame", () => 0);
    expect(await estimateRefreshRate({ timeoutMs: 10 })).toBeNull();
    vi.stubGlobal("requestAnimationFrame", undefined);
    expect(await estimateRefreshRate()).toBeNull();
  });
});

describe("classification sessions", () => {
  const run = (server, options = {}) =>
    simulateSurvey(server, target, {
      config: { ...CONFIG, task_type: "classification" },
      measureRefresh: async () => 59.94,
      ...options,
    });

  it("sends choice, rt_ms and the measured timing with every answer; the refresh rate goes into the client facts", async () => {
    const server = createFakeServer({ task_type: "classification", n: 4, practice: 2, screening: 2 });
    const result = await run(server);
    expect(result.state).toBe("completed");
    const posts = server.responsePosts();
    expect(posts.map((p) => p.body.trial)).toEqual(["p_001", "p_002", "s_001", "s_002", "t_001", "t_002", "t_003", "t_004"]);
    for (const { body } of posts) {
      expect(Object.keys(body).sort()).toEqual(["choice", "idempotency_key", "rt_ms", "timing", "trial"]);
      expect(Number.isInteger(body.choice) && body.choice >= 0 && body.choice < 16).toBe(true);
      expect(body.rt_ms).toBeGreaterThanOrEqual(0);
      expect(Object.keys(body.timing).sort()).toEqual(TIMING_KEYS);
      expect(body.timing).toMatchObject({ refresh_hz: 59.94, frames: 18 });
      expect(body.timing.shown_ms).toBeCloseTo(body.timing.image_offset_ms - body.timing.image_onset_ms, 1);
    }
    const enroll = server.requests.find((r) => r.path.endsWith("/enroll"));
    expect(enroll.body.client).toMatchObject({ refresh_hz: 59.94 });
    expect(Object.keys(enroll.body.client)).toEqual(expect.arrayContaining(["window_w", "window_h", "dpr", "touch", "user_agent"]));
    expect([...server.sessions.values()][0].client.refresh_hz).toBe(59.94);
    expect(document.querySelector("#completion-code").textContent).toBe("C0MPL3TE");
  });

  it("runs practice (with feedback), then the screening block, then the main trials", async () => {
    const server = createFakeServer({
      task_type: "classification",
      n: 2,
      practice: 2,
      screening: 3,
      revealAnswer: true,
      practiceCorrect: (b) => b.trial === "p_001",
      classification: { fixation_ms: 20, image_ms: 20, mask_ms: 20 }, // jsdom's own 60 Hz rAF: a few frames a trial
    });
    const screens = [];
    const observer = new MutationObserver(() => {
      const t = document.querySelector("#feedback-title, .message-screen h2, #classify-progress-text");
      const text = t && `${t.textContent}${document.querySelector(".feedback-answer") ? ` / ${document.querySelector(".feedback-answer").textContent}` : ""}`;
      if (text && screens[screens.length - 1] !== text) screens.push(text);
    });
    observer.observe(target, { childList: true, subtree: true, characterData: true });
    const result = await run(server, { simulate: "visual", measureRefresh: async () => 240 });
    observer.disconnect();
    expect(result.state).toBe("completed");
    expect(screens).toEqual([
      "Practice 1 of 2",
      "Correct!",
      "Practice 2 of 2",
      `Not quite. / ${CATEGORIES[server.answerOf("p_002")]}`,
      "Practice done",
      "Image 1 of 3",
      "Image 2 of 3",
      "Image 3 of 3",
      "First part done",
      "Image 1 of 2",
      "Image 2 of 2",
    ]);
    const types = result.jsPsych.data
      .get()
      .values()
      .map((d) => (d.trial_type === "image-classify" ? d.trial_id : "screening_ended" in d ? `check:${d.screening_ended}` : null))
      .filter(Boolean);
    expect(types).toEqual(["p_001", "p_002", "s_001", "s_002", "s_003", "check:false", "t_001", "t_002"]);
  });

  it.each(["body", "next"])("a failed screening block (said in the %s) ends the session with the screened-out code", async (screeningSignal) => {
    const server = createFakeServer({ task_type: "classification", n: 3, practice: 1, screening: 4, screeningCorrect: (b) => b.trial === "s_001", screeningSignal });
    const result = await run(server);
    expect(result.state).toBe("completed");
    expect(result.completion.outcome).toBe("screened_out");
    expect(server.responsePosts().map((p) => p.body.trial)).toEqual(["p_001", "s_001", "s_002", "s_003", "s_004"]);
    expect(result.jsPsych.data.get().filter({ trial_type: "image-classify" }).count()).toBe(5);
    expect(document.querySelector(".completion").dataset.outcome).toBe("screened_out");
    expect(document.querySelector("#completion-code").textContent).toBe("SCR33N");
    expect(document.querySelector("#completion-message").textContent).toMatch(/first part/);
  });

  it("a resumed session skips the answered screening trials and the passed check", async () => {
    const server = createFakeServer({ task_type: "classification", n: 2, screening: 2, done: ["s_001", "s_002"], consented: true });
    const result = await run(server);
    expect(result.state).toBe("completed");
    expect(server.responsePosts().map((p) => p.body.trial)).toEqual(["t_001", "t_002"]);
    expect(server.requests.some((r) => r.path.endsWith("/next"))).toBe(false);
  });

  it("estimates the refresh rate once before the first trial when the page did not say the task", async () => {
    const server = createFakeServer({ task_type: "classification", n: 1 });
    let calls = 0;
    const result = await run(server, { config: CONFIG, measureRefresh: async () => (++calls, 75) });
    expect(result.state).toBe("completed");
    expect(calls).toBe(1);
    expect(server.requests.find((r) => r.path.endsWith("/enroll")).body.client.refresh_hz).toBeUndefined();
    expect([...server.sessions.values()][0].client.refresh_hz).toBe(75);
    expect(server.responsePosts()[0].body.timing).toMatchObject({ refresh_hz: 75, frames: 23 });
  });

  it("a device the survey refuses gets the server's page and the screened-out code", async () => {
    const server = createFakeServer({
      task_type: "classification",
      intercept: (req) =>
        req.path.endsWith("/enroll")
          ? server.json(409, {
              message: "This study needs a computer with a mouse or touchpad and a larger screen.",
              extra: { reason: "device", completion_code: "SCR33N", redirect_url: null },
            })
          : undefined,
    });
    const result = await run(server);
    expect(result.state).toBe("completed");
    expect(document.querySelector(".completion").dataset.outcome).toBe("screened_out");
    expect(document.querySelector("#completion-message").textContent).toMatch(/needs a computer/);
    expect(document.querySelector("#completion-title").textContent).toBe("Please use a computer for this study.");
    expect(document.querySelector("#completion-code").textContent).toBe("SCR33N");
  });

  it("2AFC answers still carry no timing", async () => {
    const server = createFakeServer({ n: 2 });
    await simulateSurvey(server, target);
    for (const p of server.responsePosts()) expect(p.body).not.toHaveProperty("timing");
  });
});

describe("helpers", () => {
  it("classificationSettings: defaults 300/300/300, image_ms null kept (until answered)", () => {
    expect(classificationSettings({ classification: { categories: ["a", "b"] } })).toEqual({ categories: ["a", "b"], fixation_ms: 300, image_ms: 300, mask_ms: 300 });
    expect(classificationSettings({ classification: { categories: ["a", "b"], image_ms: null, fixation_ms: 500 } }).image_ms).toBeNull();
  });

  it("saysEnded reads the server's end signals", () => {
    expect(saysEnded({ saved: true })).toBe(false);
    expect(saysEnded({ saved: true, screening: { done: 1, total: 4, passed: null } })).toBe(false);
    expect(saysEnded({ saved: true, screening: { done: 4, total: 4, passed: false } })).toBe(true);
    expect(saysEnded({ outcome: "screened_out" })).toBe(true);
    expect(saysEnded({ trial: null, total: 3, done: 3 })).toBe(false);
  });
});
