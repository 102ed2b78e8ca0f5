// In-memory stand-in for the participant HTTP API, used through an
// injected fetch. It follows the documented contract (status codes and
// bodies) and records every request for assertions. dev/server.mjs serves it under
// Node, so nothing here imports the app (jsPsych needs a window) until simulateSurvey.

/** A sleep that only yields, so retries and backoff take no time in tests. */
export const fastSleep = () => new Promise((r) => setTimeout(r, 0));

const json = (status, body) => ({
  status,
  ok: status >= 200 && status < 300,
  text: async () => (body === undefined ? "" : JSON.stringify(body)),
});

const hex = (i, salt) => ((i + 1) * 2654435761 + salt).toString(16).padStart(8, "0").slice(-8);

export function makeTrials(n, prefix = "t") {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}_${String(i + 1).padStart(3, "0")}`,
    query: `/media/img/ab/${hex(i, prefix.length)}.png`,
    options: [`/media/img/cd/${hex(i, 2 + prefix.length)}.png`, `/media/img/ef/${hex(i, 3 + prefix.length)}.png`],
  }));
}

/** Clustering: `screens` screens of `rows` rows each; rows of one screen share 3 references. */
export function makeClusterTrials(screens, rows = 6, prefix = "c") {
  const trials = [];
  const list = [];
  for (let s = 0; s < screens; s++) {
    const references = [0, 1, 2].map((k) => `/media/img/re/${prefix}${hex(s * 3 + k, 7)}.png`);
    const items = [];
    for (let r = 0; r < rows; r++) {
      const id = `${prefix}_${s + 1}_${r + 1}`;
      trials.push({ id, query: `/media/img/ab/${prefix}${hex(s * rows + r, 9)}.png`, options: references, screen: `${prefix}s${s + 1}` });
      items.push(id);
    }
    list.push({ id: `${prefix}s${s + 1}`, references, items });
  }
  return { trials, screens: list };
}

export const CATEGORIES = [
  "airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat",
  "chair", "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck",
];

/** Classification: `{id, query, mask}` entries (the mask is a noise image of the query's size). */
export function makeClassifyTrials(n, prefix = "t") {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}_${String(i + 1).padStart(3, "0")}`,
    query: `/media/img/ab/${hex(i, prefix.length)}.png`,
    mask: `/media/img/mk/${hex(i, 5 + prefix.length)}.png`,
  }));
}

/**
 * @param {object} o
 * @param {number} [o.n]             number of trials
 * @param {string[]} [o.done]        trial ids already answered on the server
 * @param {boolean} [o.consented]
 * @param {boolean} [o.live]         false → enroll answers 404
 * @param {(req) => object|undefined} [o.intercept]  return a response to override the normal one
 * Classification (`task_type: "classification"`): `categories`, `classification` (durations, merged
 * over 300/300/300 ms), `screening` (number of screening trials), `screeningCorrect(body)`,
 * `screeningPassFraction`; a failed screening block ends the session as `screened_out`, said in the
 * last screening answer's body (`screeningSignal: "body"`, as the server does) or only by `next`
 * answering 409 (`"next"`). `revealAnswer`: practice feedback names the right category (`correct_choice`).
 */
export function createFakeServer({
  n = 4,
  done = [],
  consented = false,
  live = true,
  redirect_url = null,
  completion_code = "C0MPL3TE",
  task_type = "2afc",
  screens: nScreens = 2,
  practice: nPractice = 0,
  practiceCorrect = () => true,
  practicePassFraction = 0.5,
  codes = { failed_attention: "FA1LED", technical: "T3CHN1C", screened_out: "SCR33N" },
  mturk = false,
  intercept,
  categories = CATEGORIES,
  classification = {},
  screening: nScreening = 0,
  screeningCorrect = () => true,
  screeningPassFraction = 0.75,
  screeningSignal = "body",
  revealAnswer = false,
} = {}) {
  let trials, screens = [], practice = [], practiceScreens = [], screening = [];
  const classify = task_type === "classification";
  if (classify) {
    trials = makeClassifyTrials(n);
    practice = makeClassifyTrials(nPractice, "p");
    screening = makeClassifyTrials(nScreening, "s");
  } else if (task_type === "cluster") {
    ({ trials, screens } = makeClusterTrials(nScreens));
    if (nPractice) ({ trials: practice, screens: practiceScreens } = makeClusterTrials(nPractice, 6, "p"));
  } else {
    trials = makeTrials(n);
    practice = makeTrials(nPractice, "p");
  }
  const practiceIds = new Set(practice.map((t) => t.id));
  const screeningIds = new Set(screening.map((t) => t.id));
  /** The right category of a classification trial (its index in `categories`). */
  const answerOf = (id) => (Number.parseInt(id.slice(-3), 10) - 1) % categories.length;
  const sessions = new Map(); // token -> session
  const requests = []; // {method, path, body, status}
  let nextToken = 1;

  const newSession = () => {
    const token = `tok${nextToken++}`;
    const s = { token, consented, completed: false, answers: new Map(), outcome: null, events: [], heartbeats: [], practiceCorrect: 0, screeningCorrect: 0 };
    for (const id of done) s.answers.set(id, { key: `pre-${id}`, choice: 0, rt_ms: 1 });
    sessions.set(token, s);
    return s;
  };

  const enrollBody = (s) => ({
    token: s.token,
    consent_html: "<h2>Consent</h2><p>Please read this.</p>",
    instructions_html: "<h2>Instructions</h2><p>Pick the closer image.</p>",
    // Main trials (with catch trials) only; practice and screening apart, as the server counts them.
    total: trials.length,
    done: answered(s, trials),
    practice_total: practice.length,
    practice_done: answered(s, practice),
    screening_total: screening.length,
    screening_done: answered(s, screening),
    consented: s.consented,
    completed: s.completed,
    task_type,
    status: s.outcome ? s.outcome : "active",
    ...end(s),
    ...(classify ? { classification: { categories, fixation_ms: 300, image_ms: 300, mask_ms: 300, ...classification } } : {}),
  });

  const codeOf = (s) => (s.outcome === "completed" ? completion_code : codes[s.outcome] || null);
  const end = (s) => ({
    completion_code: s.outcome ? codeOf(s) : null,
    redirect_url: s.outcome ? redirect_url : null,
    outcome: s.outcome,
    mturk_submit:
      s.outcome && mturk
        ? { action: "https://workersandbox.mturk.com/mturk/externalSubmit", method: "POST", fields: { assignmentId: "A1", completion_code: codeOf(s) } }
        : null,
  });
  const answered = (s, list) => list.filter((t) => s.answers.has(t.id)).length;

  function handle(method, path, body) {
    if (method === "POST" && path === "/api/p/surveys/demo/enroll") {
      if (!live) return json(404, { message: "This survey is not available." });
      if (body.assignment_id === "ASSIGNMENT_ID_NOT_AVAILABLE") {
        return json(200, { preview: true, title: "Image study", instructions_html: "<p>Pick the closer image.</p>", task_type });
      }
      if (body.token && sessions.has(body.token)) return json(200, enrollBody(sessions.get(body.token)));
      if (body.token) return json(400, { message: "Unknown token." });
      return json(201, enrollBody(newSession()));
    }
    const m = path.match(/^\/api\/p\/sessions\/([^/]+)\/(consent|trials|responses|complete|events|heartbeat|abort|next)$/);
    const s = m && sessions.get(decodeURIComponent(m[1]));
    if (!s) return json(404, { message: "Not found." });
    const action = m[2];
    if (action === "consent" && method === "POST") {
      s.consented = true;
      return json(200, {});
    }
    if (action === "trials" && method === "GET") {
      return json(200, {
        task_type,
        practice,
        trials,
        screens,
        practice_screens: practiceScreens,
        ...(classify ? { screening } : {}),
        done: [...s.answers.keys()],
        total: trials.length,
        practice_total: practice.length,
      });
    }
    if (action === "next" && method === "GET") {
      if (s.outcome) return json(409, { message: "The session has ended.", extra: { reason: "ended" } });
      const left = [...practice, ...screening, ...trials].find((t) => !s.answers.has(t.id));
      const mark = left && (practiceIds.has(left.id) ? { practice: true } : screeningIds.has(left.id) ? { screening: true } : {});
      return json(200, { trial: left ? { ...left, ...mark } : null, total: trials.length, done: answered(s, trials) });
    }
    if (action === "events" && method === "POST") {
      const seen = new Set(s.events.map((e) => e.id));
      const fresh = (body.events || []).filter((e) => !seen.has(e.id));
      s.events.push(...fresh);
      if (body.client) s.client = body.client;
      return json(200, { stored: fresh.length });
    }
    if (action === "heartbeat" && method === "POST") {
      s.heartbeats.push(body.stage);
      return json(200, { status: "active", expires_in_s: 3000 });
    }
    if (action === "abort" && method === "POST") {
      s.outcome = s.outcome || "technical";
      s.abort = body;
      return json(200, end(s));
    }
    if (action === "responses" && method === "POST") {
      const isPractice = practiceIds.has(body.trial);
      const isScreening = screeningIds.has(body.trial);
      if (!isPractice && !isScreening && !trials.some((t) => t.id === body.trial)) return json(404, { message: "Unknown trial." });
      if (s.outcome) return json(409, { message: "The session has ended.", extra: { reason: "ended" } });
      const prev = s.answers.get(body.trial);
      if (prev) return json(prev.key === body.idempotency_key ? 200 : 409, { message: "already answered" });
      s.answers.set(body.trial, { key: body.idempotency_key, choice: body.choice, rt_ms: body.rt_ms, timing: body.timing });
      if (isScreening) {
        if (screeningCorrect(body)) s.screeningCorrect++;
        const done = answered(s, screening);
        let passed = null;
        if (done === screening.length) {
          passed = s.screeningCorrect / screening.length >= screeningPassFraction;
          if (!passed) s.outcome = "screened_out";
        }
        return json(201, screeningSignal === "body" ? { saved: true, screening: { done, total: screening.length, passed } } : { saved: true });
      }
      if (!isPractice) return json(201, { saved: true });
      const correct = Boolean(practiceCorrect(body));
      if (correct) s.practiceCorrect++;
      const done = answered(s, practice);
      let passed = null;
      if (done === practice.length) {
        passed = s.practiceCorrect / practice.length >= practicePassFraction;
        if (!passed) s.outcome = "failed_attention";
      }
      const feedback = { correct, ...(classify && revealAnswer ? { correct_choice: answerOf(body.trial) } : {}) };
      return json(201, { saved: true, feedback, practice: { done, total: practice.length, passed } });
    }
    if (action === "complete" && method === "POST") {
      if (s.outcome) return json(200, end(s));
      const missing = trials.filter((t) => !s.answers.has(t.id)).length;
      if (missing > 0) return json(409, { message: "Answers missing.", extra: { missing } });
      s.completed = true;
      s.outcome = "completed";
      return json(200, end(s));
    }
    return json(405, { message: "Method not allowed." });
  }

  async function fetch(url, init = {}) {
    const method = (init.method || "GET").toUpperCase();
    const path = new URL(url, "http://localhost").pathname;
    const body = init.body ? JSON.parse(init.body) : undefined;
    const req = { method, path, body };
    let res = intercept ? intercept(req) : undefined;
    if (res === "network") {
      req.status = 0;
      requests.push(req);
      throw new TypeError("Failed to fetch");
    }
    if (!res) res = handle(method, path, body);
    req.status = res.status;
    requests.push(req);
    return res;
  }

  return {
    fetch,
    trials,
    sessions,
    requests,
    json,
    responsePosts: () => requests.filter((r) => r.path.endsWith("/responses")),
    completePosts: () => requests.filter((r) => r.path.endsWith("/complete")),
    practice,
    screens,
    screening,
    categories,
    answerOf,
  };
}

export const CONFIG = { slug: "demo", enroll_url: "/api/p/surveys/demo/enroll", session_base: "/api/p/sessions/" };

/** A localStorage-like object backed by a Map (shared between "page loads"). */
export function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
    map: m,
  };
}

/** The whole survey against `server` in jsPsych's data-only simulation: no waits, no images, no redirect. */
export async function simulateSurvey(server, target, { storage = memoryStorage(), params = { prolific_pid: "PID1" }, ...rest } = {}) {
  const { runSurvey } = await import("../src/main.js");
  return runSurvey({
    config: CONFIG,
    params,
    storage,
    fetch: server.fetch,
    target,
    simulate: "data-only",
    sleep: fastSleep,
    redirectDelayMs: 60000,
    navigate: () => {},
    loadImage: async () => {},
    heartbeatMs: 60000,
    ...rest,
  });
}
