// Entry point: reads the page config and query params, enrolls, fetches the
// trials and runs the jsPsych timeline. `runSurvey` takes all its
// dependencies as arguments so tests can drive it with a fake API.

import { initJsPsych } from "jspsych";
import { createApi } from "./api.js";
import { Outbox } from "./outbox.js";
import { withRetry, sleep as realSleep } from "./retry.js";
import { buildTimeline } from "./timeline.js";
import { createConnectionBanner, renderCompletion, renderError, renderMessage } from "./ui.js";

export const tokenKey = (slug) => `iri-survey:${slug}:token`;
export const outboxKey = (slug) => `iri-survey:${slug}:outbox`;

/** Read the JSON config Django renders into <script id="survey-config">. */
export function readConfig(doc = document) {
  const el = doc.getElementById("survey-config");
  if (!el) throw new Error("Survey configuration is missing.");
  return JSON.parse(el.textContent);
}

/** PROLIFIC_PID / STUDY_ID / SESSION_ID from the page URL (all optional). */
export function readParams(search = globalThis.location ? globalThis.location.search : "") {
  const q = new URLSearchParams(search);
  return {
    prolific_pid: q.get("PROLIFIC_PID") || "",
    study_id: q.get("STUDY_ID") || "",
    session_id: q.get("SESSION_ID") || "",
  };
}

/** localStorage if usable, else an in-memory stand-in (e.g. storage blocked). */
export function safeStorage() {
  try {
    const s = globalThis.localStorage;
    const probe = "iri-survey:probe";
    s.setItem(probe, "1");
    s.removeItem(probe);
    return s;
  } catch {
    const m = new Map();
    return {
      getItem: (k) => (m.has(k) ? m.get(k) : null),
      setItem: (k, v) => m.set(k, String(v)),
      removeItem: (k) => m.delete(k),
    };
  }
}

function storageGet(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null;
  }
}
function storageSet(storage, key, value) {
  try {
    storage.setItem(key, value);
  } catch {
    /* ignore */
  }
}
function storageRemove(storage, key) {
  try {
    storage.removeItem(key);
  } catch {
    /* ignore */
  }
}

/**
 * Enroll, resuming with the stored token for anonymous participants. If the
 * server rejects a stored token, forget it and enroll afresh once.
 */
async function enroll({ api, params, storage, slug, onFailing, sleep }) {
  const anonymous = !params.prolific_pid;
  const stored = anonymous ? storageGet(storage, tokenKey(slug)) : null;
  const attempt = (token) => withRetry(() => api.enroll({ ...params, token }), { onFailing, sleep });
  let enrollment;
  if (stored) {
    try {
      enrollment = await attempt(stored);
    } catch (err) {
      if (err.retryable !== false) throw err;
      storageRemove(storage, tokenKey(slug));
      enrollment = await attempt(undefined);
    }
  } else {
    enrollment = await attempt(undefined);
  }
  if (enrollment && enrollment.token) storageSet(storage, tokenKey(slug), enrollment.token);
  return enrollment;
}

/**
 * Run the whole participant flow.
 * @returns {Promise<{state: string, completion?: object, jsPsych?: object, outbox: Outbox}>}
 */
export async function runSurvey({
  config,
  params = readParams(),
  storage = safeStorage(),
  fetch,
  target,
  doc = document,
  simulate = null, // e.g. "data-only" / "visual" for tests
  simulationOptions = {},
  redirectDelayMs = 5000,
  navigate,
  sleep = realSleep,
}) {
  const slug = config.slug;
  const api = createApi(config, { fetch });
  const banner = createConnectionBanner(doc);
  const outbox = new Outbox({
    storage,
    key: outboxKey(slug),
    send: (item) => api.postResponse(item.token, item),
    onStatus: ({ failing }) => banner.source("outbox")(failing),
    onError: (e) => console.warn("Answer rejected by server", e.status, e.message),
    sleep,
  });
  // Answers left over from an earlier visit go out right away.
  if (outbox.size) outbox.flush();

  const showCompletion = (el, completion) =>
    renderCompletion(el, completion, { redirectDelayMs, navigate });

  let enrollment, trialsData;
  try {
    renderMessage(target, '<p class="loading-message">Loading…</p>');
    enrollment = await enroll({ api, params, storage, slug, onFailing: banner.source("enroll"), sleep });
    if (enrollment.completed) {
      if (enrollment.completion_code) {
        showCompletion(target, enrollment);
        return { state: "completed", completion: enrollment, outbox };
      }
      renderMessage(target, "<p>You have already completed this survey. Thank you!</p>");
      return { state: "completed", outbox };
    }
    trialsData = await withRetry(() => api.trials(enrollment.token), { onFailing: banner.source("trials"), sleep });
  } catch (err) {
    renderError(target, (err && err.message) || "Something went wrong.");
    return { state: "error", error: err, outbox };
  }
  target.innerHTML = "";

  const jsPsych = initJsPsych({ display_element: target });
  const { timeline } = buildTimeline({
    api,
    token: enrollment.token,
    enrollment,
    trialsData,
    outbox,
    connection: (name) => banner.source(name),
    sleep,
  });

  try {
    if (simulate) await jsPsych.simulate(timeline, simulate, simulationOptions);
    else await jsPsych.run(timeline);
  } catch (err) {
    console.error(err);
    renderError(jsPsych.getDisplayElement() || target, "Something went wrong. Please reload this page.");
    return { state: "error", error: err, jsPsych, outbox };
  }

  const last = jsPsych.data.get().last(1).values()[0] || {};
  if (!last.completion_code) {
    renderError(jsPsych.getDisplayElement() || target, "Something went wrong. Please reload this page.");
    return { state: "error", jsPsych, outbox };
  }
  const completion = { completion_code: last.completion_code, redirect_url: last.redirect_url ?? null };
  showCompletion(jsPsych.getDisplayElement() || target, completion);
  return { state: "completed", completion, jsPsych, outbox };
}

/**
 * Make sure participant.css is on the page: if no stylesheet for it is
 * linked, add one next to the script's own URL (…/participant.js → …/participant.css).
 */
export function ensureStylesheet(doc = document, scriptSrc) {
  if (!scriptSrc || !/\.js(\?.*)?$/.test(scriptSrc)) return;
  const links = [...doc.querySelectorAll('link[rel="stylesheet"]')];
  if (links.some((l) => /participant(\.[\w-]+)?\.css/.test(l.getAttribute("href") || ""))) return;
  const link = doc.createElement("link");
  link.rel = "stylesheet";
  link.href = scriptSrc.replace(/\.js(\?.*)?$/, ".css$1");
  doc.head.appendChild(link);
}

export function findTarget(doc = document) {
  let target = doc.getElementById("jspsych-target") || doc.getElementById("survey-app");
  if (!target) {
    target = doc.createElement("div");
    target.id = "jspsych-target";
    doc.body.appendChild(target);
  }
  return target;
}

/** Browser entry: wire the page Django renders. */
export function boot(doc = document) {
  const target = findTarget(doc);
  let config;
  try {
    config = readConfig(doc);
  } catch (err) {
    if (target) renderError(target, err.message);
    return Promise.resolve({ state: "error", error: err });
  }
  return runSurvey({ config, target });
}

if (typeof document !== "undefined" && document.getElementById("survey-config")) {
  ensureStylesheet(document, document.currentScript && document.currentScript.src);
  boot();
}
