// Starting a session: the browser's storage, enrolling (resuming with the token this browser stored) and
// fetching the trials, or the page that ends the visit before it starts (finished already, a refused
// device, a full study, an error).

import { withRetry } from "./retry.js";
import { endOf } from "./session-calls.js";
import { renderError, renderMessage, renderNotice } from "./ui.js";

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
 * Enroll and fetch the trials: {enrollment, trialsData}. When the visit ends here, {result} instead, with
 * its page shown (showEnd(el, end) shows an end that has a code).
 */
export async function startSession({ api, fields, storage, slug, platform, banner, sleep, target, showEnd, outbox }) {
  try {
    const enrollment = await enroll({ api, fields, storage, slug, onFailing: banner.source("enroll"), sleep });
    if (isFinished(enrollment)) {
      if (enrollment.completion_code || enrollment.outcome) {
        const end = endOf(enrollment);
        showEnd(target, end);
        return { result: { state: "completed", completion: end, outbox } };
      }
      renderMessage(target, "<p>You have already completed this survey. Thank you!</p>");
      return { result: { state: "completed", outbox } };
    }
    const trialsData = await withRetry(() => api.trials(enrollment.token), { onFailing: banner.source("trials"), sleep });
    return { enrollment, trialsData };
  } catch (err) {
    return { result: refusalPage(err, { platform, target, showEnd, outbox }) };
  }
}

/** The page for a refused enrollment or a failed start, and runSurvey's result for it. */
function refusalPage(err, { platform, target, showEnd, outbox }) {
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
