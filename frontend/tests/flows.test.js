// Whole-session stories under jsPsych's simulation mode against the fake API:
// clustering, practice with feedback and a pass criterion, preload failures,
// MTurk preview / submit, quality events.
import { describe, expect, it } from "vitest";
import { mountTargetEachTest } from "./dom.js";
import { createFakeServer, fastSleep, memoryStorage, simulateSurvey } from "./fake-server.js";
import { outboxKey } from "../src/main.js";
import { preloadImages } from "../src/preload.js";
import { toUnits } from "../src/timeline.js";

const ROLE_WORDS = /target|seed|iri|catch|correct/i;

let target;
mountTargetEachTest((element) => {
  target = element;
});

const run = (server, options = {}) => simulateSurvey(server, target, { params: { prolific_pid: "PID1" }, ...options });

describe("clustering survey", () => {
  it("groups rows into screens and posts one answer per row, then completes", async () => {
    const server = createFakeServer({ task_type: "cluster", screens: 3 });
    const result = await run(server);
    expect(result.state).toBe("completed");
    const posts = server.responsePosts();
    expect(posts.map((p) => p.body.trial).sort()).toEqual(server.trials.map((t) => t.id).sort());
    for (const p of posts) expect([0, 1, 2]).toContain(p.body.choice);
    expect(new Set(posts.map((p) => p.body.idempotency_key)).size).toBe(posts.length);
    const screens = result.jsPsych.data.get().filter({ trial_type: "image-cluster" }).values();
    expect(screens).toHaveLength(3);
    expect(screens[0].trial_ids).toEqual(server.screens[0].items);
    // rts within a screen are from the first painted frame and never exceed the screen's rt.
    for (const s of screens) expect(Math.max(...s.rts_ms)).toBeLessThanOrEqual(s.rt_ms);
    expect(document.querySelector("#completion-code").textContent).toBe("C0MPL3TE");
  });

  it("renders references as columns and one labelled radio group per row, in visual mode", async () => {
    const server = createFakeServer({ task_type: "cluster", screens: 1, consented: true });
    const seen = [];
    const result = await run(server, {
      simulate: "visual",
      simulationOptions: {},
      // Snapshot the DOM of the clustering screen when its images are "painted".
      fetch: (url, init) => {
        const grid = document.querySelector(".cluster-grid");
        if (grid && !seen.length) seen.push(grid.parentElement.outerHTML);
        return server.fetch(url, init);
      },
    });
    expect(result.state).toBe("completed");
    expect(seen).toHaveLength(1);
    const box = document.createElement("div");
    box.innerHTML = seen[0];
    expect([...box.querySelectorAll(".cluster-ref img")].map((i) => i.getAttribute("alt"))).toEqual(["Photo A", "Photo B", "Photo C"]);
    const rows = [...box.querySelectorAll("fieldset.cluster-row")];
    expect(rows).toHaveLength(6);
    for (const [r, row] of rows.entries()) {
      expect(row.querySelector("legend").textContent).toBe(`Image ${r + 1} of 6`);
      const radios = [...row.querySelectorAll("input[type=radio]")];
      expect(radios.map((i) => i.getAttribute("aria-label"))).toEqual(["Photo A", "Photo B", "Photo C"]);
      expect(new Set(radios.map((i) => i.name)).size).toBe(1);
    }
    expect(box.querySelector("#cluster-progress-text").textContent).toBe("Set 1 of 1");
    // nothing in the markup tells which reference is right or which row is a catch row
    expect(seen[0].replace(/cluster-row|data-row/g, "")).not.toMatch(ROLE_WORDS);
    expect(server.responsePosts()).toHaveLength(6);
  });

  it("resumes a half-answered session with only the missing rows", async () => {
    const server = createFakeServer({ task_type: "cluster", screens: 2, done: ["c_1_1", "c_1_2", "c_1_3", "c_1_4", "c_1_5", "c_1_6", "c_2_1"], consented: true });
    const result = await run(server);
    expect(result.state).toBe("completed");
    expect(server.responsePosts().map((p) => p.body.trial)).toEqual(["c_2_2", "c_2_3", "c_2_4", "c_2_5", "c_2_6"]);
    const screens = result.jsPsych.data.get().filter({ trial_type: "image-cluster" }).values();
    expect(screens).toHaveLength(1);
  });

  it("toUnits falls back to grouping rows by their screen id", () => {
    const rows = [
      { id: "a", query: "q1", options: ["r1", "r2", "r3"], screen: "s1" },
      { id: "b", query: "q2", options: ["r1", "r2", "r3"], screen: "s1" },
      { id: "c", query: "q3", options: ["r4", "r5", "r6"], screen: "s2" },
    ];
    const units = toUnits("cluster", rows, []);
    expect(units.map((u) => u.trials.map((t) => t.id))).toEqual([["a", "b"], ["c"]]);
    expect(units[1].references).toEqual(["r4", "r5", "r6"]);
  });
});

describe("practice", () => {
  it("shows the server's feedback after each practice trial, then runs the main trials", async () => {
    const server = createFakeServer({ n: 2, practice: 2, practiceCorrect: (b) => b.trial === "p_001" });
    const titles = [];
    const observer = new MutationObserver(() => {
      const t = document.querySelector("#feedback-title");
      if (t && titles[titles.length - 1] !== t.textContent) titles.push(t.textContent);
    });
    observer.observe(target, { childList: true, subtree: true });
    const result = await run(server, { simulate: "visual" });
    observer.disconnect();
    expect(result.state).toBe("completed");
    expect(titles).toEqual(["Correct!", "Not quite."]);
    const trialsPosted = server.responsePosts().map((p) => p.body.trial);
    expect(trialsPosted).toEqual(["p_001", "p_002", "t_001", "t_002"]);
    const data = result.jsPsych.data.get().values();
    expect(data.filter((d) => "practice_correct" in d).map((d) => d.practice_correct)).toEqual([1, 0]);
    expect(document.querySelector("#completion-code").textContent).toBe("C0MPL3TE");
  });

  it("ends with the failed-attention code when the server says the practice failed", async () => {
    const server = createFakeServer({ n: 3, practice: 2, practiceCorrect: () => false });
    const result = await run(server);
    expect(result.state).toBe("completed");
    expect(result.completion.outcome).toBe("failed_attention");
    expect(server.responsePosts().map((p) => p.body.trial)).toEqual(["p_001", "p_002"]);
    expect(document.querySelector("#completion-code").textContent).toBe("FA1LED");
    expect(document.querySelector(".completion").dataset.outcome).toBe("failed_attention");
  });

  it("clustering practice screens get feedback as k of n correct", async () => {
    const server = createFakeServer({ task_type: "cluster", screens: 1, practice: 1, practiceCorrect: (b) => /_[123]$/.test(b.trial) });
    const result = await run(server);
    expect(result.state).toBe("completed");
    const fb = result.jsPsych.data.get().values().find((d) => "practice_correct" in d);
    expect([fb.practice_correct, fb.practice_total]).toEqual([3, 6]);
  });
});

describe("preloading", () => {
  it("retries each failed file and goes on when a retry works", async () => {
    const attempts = new Map();
    const loadImage = async (url) => {
      attempts.set(url, (attempts.get(url) || 0) + 1);
      if (url.includes("/ab/") && attempts.get(url) < 3) throw new Error("error");
    };
    const result = await preloadImages(["/media/img/ab/1.png", "/media/img/cd/2.png", "/media/img/ab/1.png"], {
      loadImage,
      sleep: fastSleep,
    });
    expect(result.failed).toEqual([]);
    expect(attempts.get("/media/img/ab/1.png")).toBe(3);
    expect(attempts.get("/media/img/cd/2.png")).toBe(1);
  });

  it("a file that keeps failing ends the session with the server's fair (technical) code", async () => {
    const server = createFakeServer({ n: 3 });
    const result = await run(server, {
      loadImage: async (url) => {
        if (url.includes("/ab/")) throw new Error("timeout");
      },
    });
    expect(result.state).toBe("completed");
    expect(result.completion.outcome).toBe("technical");
    const abort = server.requests.find((r) => r.path.endsWith("/abort"));
    expect(abort.body.reason).toBe("load_failure");
    expect(server.responsePosts()).toHaveLength(0);
    expect(document.querySelector("#completion-code").textContent).toBe("T3CHN1C");
    expect(document.querySelector("#completion-message").textContent).toMatch(/could not be loaded/);
  });
});

describe("MTurk", () => {
  it("preview shows the task description only and stores nothing", async () => {
    const server = createFakeServer({ n: 3 });
    const storage = memoryStorage();
    const result = await run(server, { storage, params: { assignment_id: "ASSIGNMENT_ID_NOT_AVAILABLE", hit_id: "H" } });
    expect(result.state).toBe("preview");
    expect(document.querySelector("#mturk-preview").textContent).toContain("Accept the HIT");
    expect(server.sessions.size).toBe(0);
    expect(server.requests.map((r) => r.path)).toEqual(["/api/p/surveys/demo/enroll"]);
    expect(storage.map.size).toBe(0);
  });

  it("posts the MTurk form to turkSubmitTo/mturk/externalSubmit with the assignment id", async () => {
    const server = createFakeServer({ n: 2, mturk: true });
    const submitted = [];
    const result = await run(server, {
      params: { assignment_id: "A1", hit_id: "H1", worker_id: "W1", turk_submit_to: "https://workersandbox.mturk.com" },
      redirectDelayMs: 5,
      submitForm: (form) => submitted.push(form),
    });
    expect(result.state).toBe("completed");
    const enroll = server.requests.find((r) => r.path.endsWith("/enroll"));
    expect(enroll.body).toMatchObject({ assignment_id: "A1", hit_id: "H1", worker_id: "W1", turk_submit_to: "https://workersandbox.mturk.com" });
    await new Promise((r) => setTimeout(r, 30));
    expect(submitted).toHaveLength(1);
    const form = submitted[0];
    expect(form.getAttribute("action")).toBe("https://workersandbox.mturk.com/mturk/externalSubmit");
    expect(form.getAttribute("method")).toBe("POST");
    expect(form.querySelector('input[name="assignmentId"]').value).toBe("A1");
  });
});

describe("quality data", () => {
  it("sends the client snapshot, blur/focus events and heartbeats by stage", async () => {
    const server = createFakeServer({ n: 2 });
    const result = await run(server, {
      simulate: "visual",
      fetch: (url, init) => {
        if (url.endsWith("/responses")) {
          window.dispatchEvent(new Event("blur"));
          window.dispatchEvent(new Event("focus"));
        }
        return server.fetch(url, init);
      },
    });
    expect(result.state).toBe("completed");
    const s = [...server.sessions.values()][0];
    expect(Object.keys(s.client)).toContain("dpr");
    const types = s.events.map((e) => e.type);
    expect(types.filter((t) => t === "blur").length).toBeGreaterThanOrEqual(1);
    expect(types).toContain("focus");
    for (const e of s.events) expect(Object.keys(e).sort()).toEqual(["data", "id", "t_ms", "trial", "type"]);
    expect(s.heartbeats).toEqual(expect.arrayContaining(["consent", "instructions", "trials", "debrief"]));
  });

  it("leaves nothing in storage once the session is complete", async () => {
    const server = createFakeServer({ n: 2 });
    const storage = memoryStorage();
    await run(server, { storage });
    expect(storage.getItem(outboxKey("demo"))).toBeNull();
  });
});

describe("resume policy and ended sessions", () => {
  it("shows the server's message when a returning participant is blocked or the study is full", async () => {
    const server = createFakeServer({
      intercept: (req) =>
        req.path.endsWith("/enroll")
          ? server.json(409, { message: "You have started this study before; it cannot be taken again.", extra: { reason: "blocked" } })
          : undefined,
    });
    const result = await run(server);
    expect(result.state).toBe("error");
    expect(target.querySelector('[role="alert"]').textContent).toMatch(/cannot be taken again/);
    expect(server.requests).toHaveLength(1);
  });

  it("tells a Prolific participant who finds the study full to return it, and asks nothing more of the server", async () => {
    const server = createFakeServer({
      intercept: (req) =>
        req.path.endsWith("/enroll")
          ? server.json(409, { message: "This study is full: there is no place left for a new participant.", extra: { reason: "full" } })
          : undefined,
    });
    const result = await run(server);
    expect(result.state).toBe("error");
    const alert = target.querySelector('[role="alert"]').textContent;
    expect(alert).toMatch(/This study is full/);
    expect(alert).toMatch(/return this study on Prolific/);
    expect(server.requests).toHaveLength(1);
  });

  it("skips the remaining screens once the server says the session ended, and shows the code for that outcome", async () => {
    const server = createFakeServer({ n: 5, codes: { timed_out: "T1MEOUT" } });
    let posts = 0;
    const result = await run(server, {
      simulate: "visual",
      fetch: (url, init) => {
        if (url.endsWith("/responses") && ++posts === 2) {
          const s = [...server.sessions.values()][0];
          s.outcome = "timed_out";
        }
        return server.fetch(url, init);
      },
    });
    expect(result.state).toBe("completed");
    expect(result.completion.outcome).toBe("timed_out");
    expect(document.querySelector("#completion-code").textContent).toBe("T1MEOUT");
    // The answer refused with 409 "ended" stops the survey: not all five screens were shown.
    const shown = result.jsPsych.data.get().filter({ trial_type: "image-2afc" }).count();
    expect(shown).toBeLessThan(5);
  });
});

describe("end screen and feedback details", () => {
  it("shows the server's debrief when the complete body has one", async () => {
    const server = createFakeServer({ n: 1 });
    const result = await run(server, {
      fetch: async (url, init) => {
        const res = await server.fetch(url, init);
        if (!url.endsWith("/complete") || res.status !== 200) return res;
        const body = JSON.parse(await res.text());
        return server.json(200, { ...body, debrief_html: "<p id='srv-debrief'>Thanks from the lab.</p>" });
      },
    });
    expect(result.state).toBe("completed");
    expect(document.querySelector("#debrief #srv-debrief").textContent).toBe("Thanks from the lab.");
  });

  it("gives no verdict when a practice answer comes back without feedback (a replay)", async () => {
    const server = createFakeServer({ n: 1, practice: 1 });
    const titles = [];
    const observer = new MutationObserver(() => {
      const t = document.querySelector("#feedback-title");
      if (t) titles.push(t.textContent);
    });
    observer.observe(target, { childList: true, subtree: true });
    const result = await run(server, {
      simulate: "visual",
      fetch: async (url, init) => {
        const res = await server.fetch(url, init);
        if (url.endsWith("/responses") && JSON.parse(init.body).trial.startsWith("p_")) return server.json(200, { saved: true });
        return res;
      },
    });
    observer.disconnect();
    expect(result.state).toBe("completed");
    expect(titles[0]).toBe("Your answer has been saved.");
  });
});
