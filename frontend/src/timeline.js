// Builds the jsPsych timeline for one participant session from API data
// (surveys/API.md):
//
//   consent (unless already given) → record consent
//   → instructions → preload every image (per-file retry; a load failure
//     reports `abort` and ends with the server's fair code)
//   → practice units, each followed by feedback from the server; when the
//     server says the practice failed, end (complete → its code)
//   → "practice done" screen
//   → classification only: the screening block, then a check with the server
//     (a participant who failed it is screened out: complete → its code)
//   → main units (2AFC screens, clustering screens or timed classification trials)
//   → save every answer + complete.
//
// A "unit" is one screen: a 2AFC trial, or a clustering screen (3 reference
// photos, one row per trial). Main answers go through the durable outbox;
// practice answers are POSTed at once (their response carries the feedback).
// How the session ended is put in `state.end` ({completion_code,
// redirect_url, outcome, mturk_submit}). Everything that talks to the network
// is passed in, so the timeline runs under jsPsych's simulation mode against
// a fake API.

import { estimateRefreshRate } from "./frame-timing.js";
import { sleep as realSleep } from "./retry.js";
import {
  answeredSteps,
  completeStep,
  consentSteps,
  instructionsStep,
  practiceDoneStep,
  practiceSteps,
  preloadStep,
  screeningCheckStep,
  screeningDoneStep,
} from "./timeline-steps.js";

export const CLASSIFY = "classification";

/** Trials still to be answered: not in `done` and not waiting in the outbox. */
export function remainingTrials(trialsData, pending = []) {
  const skip = new Set([...(trialsData.done || []), ...pending]);
  return (trialsData.trials || []).filter((t) => !skip.has(t.id));
}

/**
 * Group rows into screens ("units"). 2AFC: one unit per trial. Clustering:
 * one unit per screen (from `screens`, else rows grouped by `screen`), with
 * only the rows in `rows` (the ones still to answer), in the screens' order.
 */
export function toUnits(taskType, rows, screens = []) {
  if (taskType === CLASSIFY) return rows.map((t) => ({ kind: "classify", trials: [t] }));
  if (taskType !== "cluster") return rows.map((t) => ({ kind: "2afc", trials: [t] }));
  const byId = new Map(rows.map((t) => [t.id, t]));
  const units = [];
  const used = new Set();
  for (const s of screens || []) {
    const trials = (s.items || []).map((id) => byId.get(id)).filter(Boolean);
    trials.forEach((t) => used.add(t.id));
    if (trials.length) units.push({ kind: "cluster", id: s.id, references: s.references, trials });
  }
  // Rows whose screen is not listed: group by `screen` (or by their options).
  const rest = new Map();
  for (const t of rows) {
    if (used.has(t.id)) continue;
    const key = t.screen || JSON.stringify(t.options);
    if (!rest.has(key)) rest.set(key, { kind: "cluster", id: key, references: t.options, trials: [] });
    rest.get(key).trials.push(t);
  }
  return [...units, ...rest.values()];
}

const unitImages = (u) => {
  if (u.kind === "cluster") return [...u.references, ...u.trials.map((t) => t.query)];
  if (u.kind === "classify") return [u.trials[0].query, u.trials[0].mask].filter(Boolean);
  return [u.trials[0].query, ...u.trials[0].options];
};

/** A classification survey's settings from the session body: categories and durations (ms; image_ms null = until answered). */
export function classificationSettings(body) {
  const c = (body && body.classification) || {};
  const ms = (v, d) => (v === undefined ? d : v);
  return {
    categories: Array.isArray(c.categories) ? c.categories.map(String) : [],
    fixation_ms: ms(c.fixation_ms, 300) ?? 0,
    image_ms: ms(c.image_ms, 300),
    mask_ms: ms(c.mask_ms, 300) ?? 0,
  };
}

const defaultUuid = () => globalThis.crypto.randomUUID();

/**
 * @param {object} o
 * @param {object} o.api          from createApi()
 * @param {string} o.token        session token
 * @param {object} o.enrollment   enroll response
 * @param {object} o.trialsData   GET trials response
 * @param {import('./outbox.js').Outbox} o.outbox
 * @param {string} [o.taskType]   "2afc" | "cluster" | "classification" (else from trialsData / enrollment)
 * @param {(name:string) => (failing:boolean) => void} [o.connection]  banner hook factory
 * @param {object} [o.quality]    QualityLog (trial ids + load_failure events)
 * @param {(stage:string) => void} [o.onStage]
 * @param {Function} [o.loadImage] injectable image loader for preloading
 * @param {() => boolean} [o.isEnded] true once the server refused an answer because the session ended
 * @param {number|null} [o.refreshHz] classification: the session's refresh-rate estimate (made before the first trial when null)
 * @param {() => Promise<number|null>} [o.measureRefresh] how to estimate it
 * @returns {{timeline: object[], remaining: object[], state: {end: object|null, stage: string}}}
 */
export function buildTimeline({
  api,
  token,
  enrollment,
  trialsData,
  outbox,
  taskType,
  connection,
  quality = null,
  onStage = () => {},
  loadImage,
  isEnded = () => false,
  preloadTries = 3,
  uuid = defaultUuid,
  sleep = realSleep,
  refreshHz = null,
  measureRefresh = estimateRefreshRate,
}) {
  const type = taskType || trialsData.task_type || enrollment.task_type || "2afc";
  const state = { end: null, stage: "arrived", refresh_hz: refreshHz };
  const classify =
    type === CLASSIFY
      ? { ...classificationSettings(enrollment.classification ? enrollment : trialsData), refresh_hz: () => state.refresh_hz }
      : null;
  const session = {
    api,
    token,
    outbox,
    quality,
    sleep,
    uuid,
    isEnded,
    state,
    type,
    classify,
    failing: connection || (() => () => {}),
    stage: (s) => () => {
      state.stage = s;
      onStage(s);
    },
    // Skip the remaining screens once the session has an end (load failure, failed practice) or the
    // server said it ended (e.g. the reservation expired): complete then fetches the code for that outcome.
    going: () => !state.end && !isEnded(),
  };

  const pending = outbox.pendingTrials(token);
  const left = (trials) => remainingTrials({ trials, done: trialsData.done }, pending);
  const remaining = remainingTrials(trialsData, pending);
  const units = toUnits(type, remaining, trialsData.screens);
  const practiceUnits = toUnits(type, left(trialsData.practice || []), trialsData.practice_screens);
  // Classification: a screening block between practice and the main trials.
  const screeningAll = classify ? trialsData.screening || [] : [];
  const screeningUnits = toUnits(type, left(screeningAll));
  const timeline = enrollment.consented ? [] : consentSteps(session, enrollment);

  if (units.length > 0 || practiceUnits.length > 0 || screeningUnits.length > 0) {
    const images = [...new Set([...practiceUnits, ...screeningUnits, ...units].flatMap(unitImages))];
    timeline.push(instructionsStep(session, enrollment), preloadStep(session, images, { preloadTries, loadImage, measureRefresh }));
    const practiceTotal = toUnits(type, trialsData.practice || [], trialsData.practice_screens).length;
    timeline.push(...practiceSteps(session, practiceUnits, practiceTotal));
    if (practiceUnits.length > 0 && (units.length > 0 || screeningUnits.length > 0)) timeline.push(practiceDoneStep(session));
    if (screeningUnits.length > 0) {
      timeline.push(...answeredSteps(session, screeningUnits, screeningAll.length), screeningCheckStep(session));
      if (units.length > 0) timeline.push(screeningDoneStep(session, units.length));
    }
    timeline.push(...answeredSteps(session, units, toUnits(type, trialsData.trials || [], trialsData.screens).length));
  }
  timeline.push(completeStep(session));
  return { timeline, remaining, units, practiceUnits, screeningUnits, state };
}
