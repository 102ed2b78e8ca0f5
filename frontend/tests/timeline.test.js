import { describe, expect, it } from "vitest";
import { mountTargetEachTest } from "./dom.js";
import { initJsPsych } from "jspsych";
import { CONFIG, createFakeServer, fastSleep, memoryStorage, simulateSurvey } from "./fake-server.js";
import { outboxKey, tokenKey } from "../src/main.js";
import { buildTimeline, remainingTrials } from "../src/timeline.js";
import { createApi } from "../src/api.js";
import { Outbox } from "../src/outbox.js";

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let target;
mountTargetEachTest((element) => {
  target = element;
});

const run = (server, options = {}) => simulateSurvey(server, target, { params: { prolific_pid: "PID1", study_id: "S1", session_id: "X1" }, ...options });

describe("full timeline in jsPsych simulation mode", () => {
  it("posts every trial exactly once with unique keys, then completes", async () => {
    const server = createFakeServer({ n: 5 });
    const storage = memoryStorage();
    const result = await run(server, { storage });

    expect(result.state).toBe("completed");
    const posts = server.responsePosts();
    expect(posts.map((p) => p.body.trial)).toEqual(server.trials.map((t) => t.id));
    const keys = posts.map((p) => p.body.idempotency_key);
    expect(new Set(keys).size).toBe(keys.length);
    for (const k of keys) expect(k).toMatch(UUID_V4);
    for (const p of posts) {
      expect([0, 1]).toContain(p.body.choice);
      expect(typeof p.body.rt_ms).toBe("number");
      expect(p.body.rt_ms).toBeGreaterThanOrEqual(0);
      expect(Object.keys(p.body).sort()).toEqual(["choice", "idempotency_key", "rt_ms", "trial"]);
    }

    // Enroll body carries the Prolific params; consent was recorded.
    const enroll = server.requests.find((r) => r.path.endsWith("/enroll"));
    expect(enroll.body).toMatchObject({ prolific_pid: "PID1", study_id: "S1", session_id: "X1" });
    expect(Object.keys(enroll.body.client).sort()).toEqual(["dpr", "screen_h", "screen_w", "touch", "user_agent", "window_h", "window_w"]);
    expect(server.requests.some((r) => r.path.endsWith("/consent"))).toBe(true);

    // complete comes after every response was confirmed, exactly once.
    const completeIdx = server.requests.findIndex((r) => r.path.endsWith("/complete"));
    const lastResponseIdx = server.requests.map((r) => r.path.endsWith("/responses")).lastIndexOf(true);
    expect(completeIdx).toBeGreaterThan(lastResponseIdx);
    expect(server.completePosts()).toHaveLength(1);
    expect(storage.getItem(outboxKey("demo"))).toBeNull();

    // The completion code shown is the server's.
    expect(document.querySelector("#completion-code").textContent).toBe("C0MPL3TE");
    expect(document.body.textContent).toContain("Your completion code:");

    // jsPsych data for the 2AFC trials
    const data = result.jsPsych.data.get().filter({ trial_type: "image-2afc" }).values();
    expect(data.map((d) => d.trial_id)).toEqual(server.trials.map((t) => t.id));
    for (const d of data) {
      expect([0, 1]).toContain(d.choice);
      expect(d.rt_ms).toBeGreaterThanOrEqual(0);
    }
  });

  it("skips trials the server already has (resume) and skips consent when given", async () => {
    const server = createFakeServer({ n: 6, done: ["t_001", "t_002", "t_004"], consented: true });
    const result = await run(server);
    expect(result.state).toBe("completed");
    expect(server.responsePosts().map((p) => p.body.trial)).toEqual(["t_003", "t_005", "t_006"]);
    expect(server.requests.some((r) => r.path.endsWith("/consent"))).toBe(false);
    expect(server.completePosts()).toHaveLength(1);
  });

  it("retries 5xx / network errors with the same key and only then completes", async () => {
    let failures = 0;
    const bannerSeen = [];
    const server = createFakeServer({
      n: 3,
      intercept: (req) => {
        const banner = document.querySelector("#connection-status");
        if (req.path.endsWith("/responses")) bannerSeen.push(banner ? banner.textContent : null);
        if (req.path.endsWith("/responses") && failures < 4) {
          failures++;
          return failures % 2 ? server.json(503, { message: "busy" }) : "network";
        }
      },
    });
    const result = await run(server);
    expect(result.state).toBe("completed");
    const posts = server.responsePosts();
    expect(posts.length).toBe(3 + 4);
    // One key per trial, reused for every retry of that trial.
    const keysByTrial = new Map();
    for (const p of posts) {
      if (!keysByTrial.has(p.body.trial)) keysByTrial.set(p.body.trial, new Set());
      keysByTrial.get(p.body.trial).add(p.body.idempotency_key);
    }
    expect([...keysByTrial.values()].map((s) => s.size)).toEqual([1, 1, 1]);
    const completeIdx = server.requests.findIndex((r) => r.path.endsWith("/complete"));
    const lastResponseIdx = server.requests.map((r) => r.path.endsWith("/responses")).lastIndexOf(true);
    expect(completeIdx).toBeGreaterThan(lastResponseIdx);
    // "Reconnecting…" (role=status) was shown while failing, and is gone after recovery.
    expect(bannerSeen).toContain("Reconnecting…");
    const banner = document.querySelector("#connection-status");
    expect(banner.getAttribute("role")).toBe("status");
    expect(banner.textContent).toBe("");
  });

  it("anonymous participants resume the same session with the stored token", async () => {
    const server = createFakeServer({ n: 4 });
    const storage = memoryStorage();
    // First visit: stop after enrolment by making the trials call fail hard.
    let block = true;
    const first = await run(server, {
      storage,
      params: {},
      fetch: (url, init) =>
        block && url.endsWith("/trials") ? Promise.resolve(server.json(403, { message: "stop" })) : server.fetch(url, init),
    });
    expect(first.state).toBe("error");
    const token = storage.getItem(tokenKey("demo"));
    expect(token).toBeTruthy();
    expect(server.requests[0].body.token).toBeUndefined();

    block = false;
    const second = await run(server, { storage, params: {} });
    expect(second.state).toBe("completed");
    const enrolls = server.requests.filter((r) => r.path.endsWith("/enroll"));
    expect(enrolls[1].body.token).toBe(token);
    expect(enrolls[1].status).toBe(200);
    expect(server.sessions.size).toBe(1);
  });

  it("a Prolific participant's reload sends the token this browser stored for that ID", async () => {
    const server = createFakeServer({ n: 3 });
    const storage = memoryStorage();
    let block = true;
    const first = await run(server, {
      storage,
      fetch: (url, init) =>
        block && url.endsWith("/trials") ? Promise.resolve(server.json(403, { message: "stop" })) : server.fetch(url, init),
    });
    expect(first.state).toBe("error");
    const token = storage.getItem(tokenKey("demo", { prolific_pid: "PID1" }));
    expect(token).toBeTruthy();
    expect(storage.getItem(tokenKey("demo"))).toBeNull(); // another ID in this browser keeps its own session

    block = false;
    const second = await run(server, { storage });
    expect(second.state).toBe("completed");
    const enrolls = server.requests.filter((r) => r.path.endsWith("/enroll"));
    expect(enrolls[1].body).toMatchObject({ prolific_pid: "PID1", token });
  });

  it("answers left in the outbox from a previous page are sent, not asked again", async () => {
    const server = createFakeServer({ n: 3, consented: true });
    const storage = memoryStorage();
    // Enrol once to get a session/token, as an earlier page load would have.
    const enrollRes = await server.fetch(CONFIG.enroll_url, { method: "POST", body: "{}" });
    const { token } = JSON.parse(await enrollRes.text());
    storage.setItem(tokenKey("demo"), token);
    storage.setItem(
      outboxKey("demo"),
      JSON.stringify([{ token, trial: "t_001", choice: 1, rt_ms: 812, idempotency_key: "11111111-1111-4111-8111-111111111111" }])
    );
    const result = await run(server, { storage, params: {} });
    expect(result.state).toBe("completed");
    const posts = server.responsePosts();
    expect(posts.map((p) => p.body.trial)).toEqual(["t_001", "t_002", "t_003"]);
    expect(posts[0].body.idempotency_key).toBe("11111111-1111-4111-8111-111111111111");
  });

  it("shows the server message when the survey is not live", async () => {
    const server = createFakeServer({ live: false });
    const result = await run(server);
    expect(result.state).toBe("error");
    expect(target.querySelector('[role="alert"]').textContent).toBe("This survey is not available.");
  });

  it("shows the completion code right away for an already completed session", async () => {
    const server = createFakeServer({ n: 2, redirect_url: "https://example.org/done?cc=X" });
    const storage = memoryStorage();
    await run(server, { storage, params: {} });
    const navigations = [];
    const again = await run(server, { storage, params: {}, redirectDelayMs: 10, navigate: (u) => navigations.push(u) });
    expect(again.state).toBe("completed");
    expect(document.querySelector("#completion-code").textContent).toBe("C0MPL3TE");
    expect(document.querySelector("a#completion-redirect").getAttribute("href")).toBe("https://example.org/done?cc=X");
    await new Promise((r) => setTimeout(r, 30));
    expect(navigations).toEqual(["https://example.org/done?cc=X"]);
  });
});

describe("buildTimeline", () => {
  it("can be run directly with jsPsych.simulate against the fake API", async () => {
    const server = createFakeServer({ n: 3, done: ["t_002"] });
    const api = createApi(CONFIG, { fetch: server.fetch });
    const enrollment = await api.enroll({ prolific_pid: "P" });
    const trialsData = await api.trials(enrollment.token);
    const outbox = new Outbox({
      storage: memoryStorage(),
      key: "k",
      send: (item) => api.postResponse(item.token, item),
      sleep: fastSleep,
    });
    const { timeline, remaining } = buildTimeline({
      api,
      token: enrollment.token,
      enrollment,
      trialsData,
      outbox,
      sleep: fastSleep,
      loadImage: async () => {},
    });
    expect(remaining.map((t) => t.id)).toEqual(["t_001", "t_003"]);
    const jsPsych = initJsPsych({ display_element: target });
    await jsPsych.simulate(timeline, "data-only");
    expect(server.responsePosts().map((p) => p.body.trial)).toEqual(["t_001", "t_003"]);
    const last = jsPsych.data.get().last(1).values()[0];
    expect(last.completion_code).toBe("C0MPL3TE");
    // 2AFC trials show "Image k of n" counting already answered ones.
    const afc = timeline.filter((t) => t.timeline && t.timeline[0].trial_id).map((t) => t.timeline[0]);
    expect(afc.map((t) => [t.progress_current, t.progress_total])).toEqual([
      [2, 3],
      [3, 3],
    ]);
  });

  it("remainingTrials skips done and pending ids", () => {
    const data = { trials: [{ id: "a" }, { id: "b" }, { id: "c" }], done: ["a"] };
    expect(remainingTrials(data, ["c"]).map((t) => t.id)).toEqual(["b"]);
  });
});
