// Entry point: reads the page config and query params, enrolls, fetches the
// trials and runs the jsPsych timeline. `runSurvey` takes all its
// dependencies as arguments so tests can drive it with a fake API.

import { initJsPsych } from "jspsych";
import { createApi } from "./api.js";
import { safeStorage, startSession, tokenKey } from "./enroll.js";
import { estimateRefreshRate } from "./frame-timing.js";
import { Outbox } from "./outbox.js";
import { enrollFields, platformOf, readParams } from "./platform.js";
import { QualityLog, environmentSnapshot } from "./quality.js";
import { sleep as realSleep } from "./retry.js";
import { saysEnded } from "./session-calls.js";
import { CLASSIFY, buildTimeline } from "./timeline.js";
import { createConnectionBanner, renderCompletion, renderError, renderMessage, renderPreview } from "./ui.js";

export { readParams, safeStorage, tokenKey };

export const outboxKey = (slug) => `iri-survey:${slug}:outbox`;
export const eventsKey = (slug) => `iri-survey:${slug}:events`;
const STAGES = new Set(["consent", "instructions", "practice", "trials", "debrief"]);

/** Read the JSON config Django renders into <script id="survey-config">. */
export function readConfig(doc = document) {
  const el = doc.getElementById("survey-config");
  if (!el) throw new Error("Survey configuration is missing.");
  return JSON.parse(el.textContent);
}

/** MTurk's preview: the server stores and reserves nothing; no token, no outbox. */
async function runPreview({ api, config, params, target }) {
  renderPreview(target, { title: config.title || "" });
  try {
    const body = await api.enroll({ ...enrollFields(params), pilot: config.pilot });
    renderPreview(target, { title: body.title || config.title || "", instructions_html: body.instructions_html || "" });
  } catch {
    /* the static preview stays */
  }
  return { state: "preview" };
}

/** The durable outbox of answers; onEnded() when the server says the session is over. */
function sessionOutbox({ api, storage, slug, banner, sleep, onEnded }) {
  return new Outbox({
    storage,
    key: outboxKey(slug),
    send: async (item) => {
      const res = await api.postResponse(item.token, item);
      // e.g. the last screening answer of a participant who failed the block: the session is over.
      if (res && res.status >= 200 && res.status < 300 && saysEnded(res.data)) onEnded();
      return res;
    },
    onStatus: ({ failing }) => banner.source("outbox")(failing),
    onError: (e) => console.warn("Answer rejected by server", e.status, e.message),
    onConflict: ({ data }) => {
      if (data && data.extra && data.extra.reason === "ended") onEnded();
    },
    sleep,
  });
}

/**
 * Quality data: events (blur/focus, visibility, fullscreen exit, resize), listened to from now on, and,
 * from begin() on, sent every `eventsMs` with a heartbeat every `heartbeatMs`, and at each change of stage.
 */
function watchQuality({ api, token, win, doc, storage, slug }) {
  const quality = new QualityLog({ win, doc, storage, key: eventsKey(slug) }).start();
  let stage = "instructions";
  let timers = [];
  const flushEvents = () => quality.flush((body) => api.events(token, body));
  const beat = () => api.heartbeat(token, stage).catch(() => {});
  return {
    quality,
    flushEvents,
    begin({ client, eventsMs, heartbeatMs }) {
      quality.flush((body) => api.events(token, body), { client });
      timers = [setInterval(flushEvents, eventsMs), setInterval(beat, heartbeatMs)];
    },
    onStage: (s) => {
      if (STAGES.has(s) && s !== stage) {
        stage = s;
        beat();
        flushEvents();
      }
    },
    stop: () => {
      timers.forEach(clearInterval);
      quality.stop();
    },
  };
}

/** Run the timeline, then show the end (or an error when the session has none). */
async function runTimeline({ jsPsych, timeline, state, simulate, simulationOptions, target, watch, showEnd, outbox }) {
  const fail = (extra) => {
    watch.stop();
    renderError(jsPsych.getDisplayElement() || target, "Something went wrong. Please reload this page.");
    return { state: "error", ...extra, jsPsych, outbox };
  };
  try {
    if (simulate) await jsPsych.simulate(timeline, simulate, simulationOptions);
    else await jsPsych.run(timeline);
  } catch (err) {
    console.error(err);
    return fail({ error: err });
  }
  const end = state.end;
  if (!end || !(end.completion_code || end.outcome)) return fail({});
  watch.onStage("debrief");
  watch.flushEvents();
  watch.stop();
  showEnd(jsPsych.getDisplayElement() || target, end);
  return { state: "completed", completion: end, jsPsych, outbox, quality: watch.quality };
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
  if (platform === "mturk-preview") return runPreview({ api, config, params, target });

  let sessionEnded = false;
  const outbox = sessionOutbox({ api, storage, slug, banner, sleep, onEnded: () => (sessionEnded = true) });
  // Answers left over from an earlier visit go out right away.
  if (outbox.size) outbox.flush();

  // The page names the task; the session's trials, once fetched, have the last word (the end screen speaks of it).
  let taskType = config.task_type;
  const showEnd = (el, end) =>
    renderCompletion(el, { ...end, mturk: end.mturk_submit || null, task_type: taskType }, { redirectDelayMs, navigate, submitForm, doc });

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
  const started = await startSession({ api, fields, storage, slug, platform, banner, sleep, target, showEnd, outbox });
  if (started.result) return started.result;
  const { enrollment, trialsData } = started;
  target.innerHTML = "";
  const token = enrollment.token;

  const watch = watchQuality({ api, token, win, doc, storage, slug });
  taskType = trialsData.task_type || enrollment.task_type || config.task_type;
  if (taskType === CLASSIFY && !(refreshHz > 0)) refreshHz = await measureRefresh();
  watch.begin({ client: client(), eventsMs, heartbeatMs: heartbeatMs ?? (config.heartbeat_s || 30) * 1000 });

  const jsPsych = initJsPsych({ display_element: target });
  const { timeline, state } = buildTimeline({
    api,
    token,
    enrollment,
    trialsData,
    outbox,
    taskType,
    connection: (name) => banner.source(name),
    quality: watch.quality,
    onStage: watch.onStage,
    loadImage,
    isEnded: () => sessionEnded,
    sleep,
    refreshHz,
    measureRefresh,
  });
  return runTimeline({ jsPsych, timeline, state, simulate, simulationOptions, target, watch, showEnd, outbox });
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
