// Entry point: reads the page config and query params, enrolls, fetches the
// trials and runs the jsPsych timeline. `runSurvey` takes all its
// dependencies as arguments so tests can drive it with a fake API.

import { initJsPsych } from "jspsych";
import { createApi } from "./api.js";
import { Outbox } from "./outbox.js";
import { withRetry, sleep as realSleep } from "./retry.js";
import { endOf, saysEnded } from "./session-calls.js";
import { CLASSIFY, buildTimeline } from "./timeline.js";
import { estimateRefreshRate } from "./frame-timing.js";
import {
  createConnectionBanner,
  renderCompletion,
  renderError,
  renderMessage,
  renderNotice,
  renderPreview,
} from "./ui.js";
import { enrollFields, platformOf, readParams } from "./platform.js";
import { QualityLog, environmentSnapshot } from "./quality.js";

export { readParams };

/** A full study (every list has its ratings, or adaptive collection has what it needs): what each platform
 * asks of someone who cannot take part, so nobody waits for a code that will not come. */
const FULL_ADVICE = {
  prolific: " Please return this study on Prolific (choose “Return” on your submission); returning does not count against you.",
  mturk: " Please return this HIT on MTurk; returning does not count against you.",
};

export const DEVICE_TITLE = "Please use a computer for this study.";

/** One stored token per study and platform ID (anonymous visitors have none). */
export const tokenKey = (slug, fields = {}) =>
  `iri-survey:${slug}:token${fields.prolific_pid || fields.worker_id ? `:${fields.prolific_pid || fields.worker_id}` : ""}`;
export const outboxKey = (slug) => `iri-survey:${slug}:outbox`;
export const eventsKey = (slug) => `iri-survey:${slug}:events`;
const STAGES = new Set(["consent", "instructions", "practice", "trials", "debrief"]);

/** Read the JSON config Django renders into <script id="survey-config">. */
export function readConfig(doc = document) {
  const el = doc.getElementById("survey-config");
  if (!el) throw new Error("Survey configuration is missing.");
  return JSON.parse(el.textContent);
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
 * Enroll, resuming with the token this browser stored for the study. The
 * server gives a session back only to the browser holding its token, also
 * when a Prolific or MTurk ID names it (an ID typed into another browser is
 * refused). If the server rejects a stored token, forget it and enroll afresh once.
 */
async function enroll({ api, fields, storage, slug, onFailing, sleep }) {
  const key = tokenKey(slug, fields);
  const stored = storageGet(storage, key);
  const attempt = (token) => withRetry(() => api.enroll({ ...fields, token }), { onFailing, sleep });
  let enrollment;
  if (stored) {
    try {
      enrollment = await attempt(stored);
    } catch (err) {
      if (err.retryable !== false || err.status === 409) throw err;
      storageRemove(storage, key);
      enrollment = await attempt(undefined);
    }
  } else {
    enrollment = await attempt(undefined);
  }
  if (enrollment && enrollment.token) storageSet(storage, key, enrollment.token);
  return enrollment;
}

/** A finished session (any final status) comes back with its end fields filled. */
function isFinished(enrollment) {
  return Boolean(
    enrollment.completed || enrollment.completion_code || enrollment.outcome || (enrollment.status && enrollment.status !== "active")
  );
}

/**
 * Run the whole participant flow.
 * @returns {Promise<{state: string, completion?: object, jsPsych?: object, outbox?: Outbox}>}
 */
export async function runSurvey({
  config,
  params = readParams(),
  storage = safeStorage(),
  fetch,
  target,
  doc = document,
  win = globalThis.window,
  simulate = null, // e.g. "data-only" / "visual" for tests
  simulationOptions = {},
  redirectDelayMs = 5000,
  navigate,
  submitForm,
  loadImage,
  heartbeatMs,
  eventsMs = 5000,
  sleep = realSleep,
  measureRefresh = estimateRefreshRate,
}) {
  const slug = config.slug;
  const api = createApi(config, { fetch });
  const platform = platformOf(params);
  const banner = createConnectionBanner(doc);

  if (platform === "mturk-preview") {
    // Preview: the server stores and reserves nothing; no token, no outbox.
    renderPreview(target, { title: config.title || "" });
    try {
      const body = await api.enroll({ ...enrollFields(params), pilot: config.pilot });
      renderPreview(target, { title: body.title || config.title || "", instructions_html: body.instructions_html || "" });
    } catch {
      /* the static preview stays */
    }
    return { state: "preview" };
  }

  let sessionEnded = false;
  const outbox = new Outbox({
    storage,
    key: outboxKey(slug),
    send: async (item) => {
      const res = await api.postResponse(item.token, item);
      // e.g. the last screening answer of a participant who failed the block: the session is over.
      if (res && res.status >= 200 && res.status < 300 && saysEnded(res.data)) sessionEnded = true;
      return res;
    },
    onStatus: ({ failing }) => banner.source("outbox")(failing),
    onError: (e) => console.warn("Answer rejected by server", e.status, e.message),
    onConflict: ({ data }) => {
      if (data && data.extra && data.extra.reason === "ended") sessionEnded = true;
    },
    sleep,
  });
  // Answers left over from an earlier visit go out right away.
  if (outbox.size) outbox.flush();

  // The page names the task; the session's trials, once fetched, have the last word (the end screen speaks of it).
  let taskType = config.task_type;
  const showEnd = (el, end) =>
    renderCompletion(
      el,
      { ...end, mturk: end.mturk_submit || null, task_type: taskType },
      { redirectDelayMs, navigate, submitForm, doc }
    );

  let enrollment, trialsData;
  // Timed classification counts display frames: the refresh rate is estimated once, before enrolling when the
  // page says the task (it goes into the `client` facts), else before the first trial.
  let refreshHz = null;
  const client = () => ({ ...environmentSnapshot(win), ...(refreshHz > 0 ? { refresh_hz: refreshHz } : {}) });
  renderMessage(target, '<p class="loading-message">Loading…</p>');
  if (config.task_type === CLASSIFY) refreshHz = await measureRefresh();
  const fields = {
    ...enrollFields(params),
    turk_submit_to: platform === "mturk" ? params.turk_submit_to : undefined,
    pilot: config.pilot,
    client: client(),
  };
  try {
    enrollment = await enroll({
      api,
      fields,
      storage,
      slug,
      onFailing: banner.source("enroll"),
      sleep,
    });
    if (isFinished(enrollment)) {
      if (enrollment.completion_code || enrollment.outcome) {
        const end = endOf(enrollment);
        showEnd(target, end);
        return { state: "completed", completion: end, outbox };
      }
      renderMessage(target, "<p>You have already completed this survey. Thank you!</p>");
      return { state: "completed", outbox };
    }
    trialsData = await withRetry(() => api.trials(enrollment.token), { onFailing: banner.source("trials"), sleep });
  } catch (err) {
    const extra = (err && err.status === 409 && err.data && err.data.extra) || {};
    if (extra.reason === "device") {
      // The survey refuses this kind of device (e.g. phones): the server's page and its screened-out code.
      // Turned away before starting: told what to use, not thanked for taking part.
      const end = { ...endOf(extra), outcome: "screened_out", message: err.message, title: DEVICE_TITLE };
      showEnd(target, end);
      return { state: "completed", completion: end, outbox };
    }
    if (extra.reason === "full") {
      renderNotice(target, "Sorry, this study is full.", err.message + (FULL_ADVICE[platform] || ""));
      return { state: "error", error: err, outbox };
    }
    renderError(target, (err && err.message) || "Something went wrong.");
    return { state: "error", error: err, outbox };
  }
  target.innerHTML = "";
  const token = enrollment.token;

  // Quality data: events (blur/focus, visibility, fullscreen exit, resize) and a heartbeat.
  const quality = new QualityLog({ win, doc, storage, key: eventsKey(slug) }).start();
  let stage = "instructions";
  const flushEvents = () => quality.flush((body) => api.events(token, body));
  const beat = () => api.heartbeat(token, stage).catch(() => {});
  taskType = trialsData.task_type || enrollment.task_type || config.task_type;
  if (taskType === CLASSIFY && !(refreshHz > 0)) refreshHz = await measureRefresh();
  quality.flush((body) => api.events(token, body), { client: client() });
  const timers = [
    setInterval(flushEvents, eventsMs),
    setInterval(beat, heartbeatMs ?? (config.heartbeat_s || 30) * 1000),
  ];
  const onStage = (s) => {
    if (STAGES.has(s) && s !== stage) {
      stage = s;
      beat();
      flushEvents();
    }
  };

  const jsPsych = initJsPsych({ display_element: target });
  const { timeline, state } = buildTimeline({
    api,
    token,
    enrollment,
    trialsData,
    outbox,
    taskType,
    connection: (name) => banner.source(name),
    quality,
    onStage,
    loadImage,
    isEnded: () => sessionEnded,
    sleep,
    refreshHz,
    measureRefresh,
  });

  const stop = () => {
    timers.forEach(clearInterval);
    quality.stop();
  };
  try {
    if (simulate) await jsPsych.simulate(timeline, simulate, simulationOptions);
    else await jsPsych.run(timeline);
  } catch (err) {
    stop();
    console.error(err);
    renderError(jsPsych.getDisplayElement() || target, "Something went wrong. Please reload this page.");
    return { state: "error", error: err, jsPsych, outbox };
  }

  const end = state.end;
  if (!end || !(end.completion_code || end.outcome)) {
    stop();
    renderError(jsPsych.getDisplayElement() || target, "Something went wrong. Please reload this page.");
    return { state: "error", jsPsych, outbox };
  }
  onStage("debrief");
  flushEvents();
  stop();
  showEnd(jsPsych.getDisplayElement() || target, end);
  return { state: "completed", completion: end, jsPsych, outbox, quality };
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
