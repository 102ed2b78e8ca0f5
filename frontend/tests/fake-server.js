// In-memory stand-in for the participant HTTP API, used through an
// injected fetch. It follows the documented contract (status codes and
// bodies) and records every request for assertions.

const json = (status, body) => ({
  status,
  ok: status >= 200 && status < 300,
  text: async () => (body === undefined ? "" : JSON.stringify(body)),
});

export function makeTrials(n) {
  const hex = (i, salt) => ((i + 1) * 2654435761 + salt).toString(16).padStart(8, "0").slice(-8);
  return Array.from({ length: n }, (_, i) => ({
    id: `t_${String(i + 1).padStart(3, "0")}`,
    query: `/media/img/ab/${hex(i, 1)}.png`,
    options: [`/media/img/cd/${hex(i, 2)}.png`, `/media/img/ef/${hex(i, 3)}.png`],
  }));
}

/**
 * @param {object} o
 * @param {number} [o.n]             number of trials
 * @param {string[]} [o.done]        trial ids already answered on the server
 * @param {boolean} [o.consented]
 * @param {boolean} [o.live]         false → enroll answers 404
 * @param {(req) => object|undefined} [o.intercept]  return a response to override the normal one
 */
export function createFakeServer({
  n = 4,
  done = [],
  consented = false,
  live = true,
  redirect_url = null,
  completion_code = "C0MPL3TE",
  intercept,
} = {}) {
  const trials = makeTrials(n);
  const sessions = new Map(); // token -> session
  const requests = []; // {method, path, body, status}
  let nextToken = 1;

  const newSession = () => {
    const token = `tok${nextToken++}`;
    const s = { token, consented, completed: false, answers: new Map() };
    for (const id of done) s.answers.set(id, { key: `pre-${id}`, choice: 0, rt_ms: 1 });
    sessions.set(token, s);
    return s;
  };

  const enrollBody = (s) => ({
    token: s.token,
    consent_html: "<h2>Consent</h2><p>Please read this.</p>",
    instructions_html: "<h2>Instructions</h2><p>Pick the closer image.</p>",
    total: trials.length,
    done: s.answers.size,
    consented: s.consented,
    completed: s.completed,
    completion_code: s.completed ? completion_code : null,
    redirect_url: s.completed ? redirect_url : null,
  });

  function handle(method, path, body) {
    if (method === "POST" && path === "/api/p/surveys/demo/enroll") {
      if (!live) return json(404, { message: "This survey is not available." });
      if (body.token && sessions.has(body.token)) return json(200, enrollBody(sessions.get(body.token)));
      if (body.token) return json(400, { message: "Unknown token." });
      return json(201, enrollBody(newSession()));
    }
    const m = path.match(/^\/api\/p\/sessions\/([^/]+)\/(consent|trials|responses|complete)$/);
    const s = m && sessions.get(decodeURIComponent(m[1]));
    if (!s) return json(404, { message: "Not found." });
    const action = m[2];
    if (action === "consent" && method === "POST") {
      s.consented = true;
      return json(200, {});
    }
    if (action === "trials" && method === "GET") {
      return json(200, { trials, done: [...s.answers.keys()], total: trials.length });
    }
    if (action === "responses" && method === "POST") {
      if (!trials.some((t) => t.id === body.trial)) return json(400, { message: "Unknown trial." });
      const prev = s.answers.get(body.trial);
      if (prev) return json(prev.key === body.idempotency_key ? 200 : 409, { message: "already answered" });
      s.answers.set(body.trial, { key: body.idempotency_key, choice: body.choice, rt_ms: body.rt_ms });
      return json(201, {});
    }
    if (action === "complete" && method === "POST") {
      const missing = trials.length - s.answers.size;
      if (missing > 0) return json(409, { message: "Answers missing.", missing });
      s.completed = true;
      return json(200, { completion_code, redirect_url });
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
