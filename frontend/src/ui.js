// DOM helpers for the screens that live outside jsPsych trials: the
// connection banner, error / info messages and the completion screen.

import { escapeHtml } from "./html.js";

/**
 * A role=status live region that shows "Reconnecting…" while any of its
 * sources reports a failure. Lives outside the jsPsych display element so
 * trials don't wipe it.
 */
export function createConnectionBanner(doc = document) {
  let el = doc.getElementById("connection-status");
  if (!el) {
    el = doc.createElement("div");
    el.id = "connection-status";
    el.className = "connection-status";
    el.setAttribute("role", "status");
    el.setAttribute("aria-live", "polite");
    doc.body.appendChild(el);
  }
  const failing = new Set();
  const render = () => {
    const show = failing.size > 0;
    const shown = el.childElementCount > 0;
    if (show && !shown) el.innerHTML = '<span class="connection-banner">Reconnecting…</span>';
    if (!show && shown) el.innerHTML = "";
  };
  return {
    element: el,
    /** Returns a callback (failing: boolean) => void for one source. */
    source(name) {
      return (isFailing) => {
        if (isFailing) failing.add(name);
        else failing.delete(name);
        render();
      };
    },
    get visible() {
      return failing.size > 0;
    },
  };
}

/**
 * Progress bar + "<noun> k of n" text; ids `<id>-text` and `<id>`. Empty when
 * either number is missing.
 */
export function progressHtml(current, total, noun, id) {
  if (current == null || total == null) return "";
  return `<div class="progress ${id}">
    <span id="${id}-text" class="progress-text">${escapeHtml(noun)} ${current} of ${total}</span>
    <progress id="${id}" aria-labelledby="${id}-text" max="${total}" value="${current - 1}"></progress>
  </div>`;
}

export function renderMessage(el, html) {
  el.innerHTML = `<div class="message-screen">${html}</div>`;
}

export function renderError(el, message) {
  el.innerHTML = `<div class="message-screen"><p class="error-message" role="alert">${escapeHtml(message)}</p></div>`;
}

/** A page that ends the visit without being anyone's fault (e.g. the study is full): a title and the message. */
export function renderNotice(el, title, message) {
  el.innerHTML = `<div class="message-screen notice">
    <h1 class="completion-title" id="notice-title">${escapeHtml(title)}</h1>
    <p class="notice-message" id="notice-message" role="alert">${escapeHtml(message)}</p>
  </div>`;
}

/** Only allow http(s) (absolute or relative) redirect targets. */
export function safeUrl(url, base = globalThis.location ? globalThis.location.href : "http://localhost/") {
  if (!url) return null;
  try {
    const u = new URL(url, base);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

export const OUTCOME_TEXT = {
  completed: { title: "Thank you!", body: "All your answers have been saved." },
  failed_attention: {
    title: "Thank you for taking part.",
    body: "Unfortunately your answers did not pass the attention checks, so the study ends here.",
  },
  technical: {
    title: "Sorry, a technical problem ended the study early.",
    body: "This is not your fault. Please submit the code below so that you are treated fairly.",
  },
  timed_out: { title: "The time limit for this study has passed.", body: "Your place has been given to someone else." },
  returned: { title: "You have left the study.", body: "Thank you for your time." },
  screened_out: {
    title: "Thank you for taking part.",
    body: "Your answers in the first part did not reach the level this study needs, so the study ends here.",
  },
};

const ABOUT =
  "<p><strong>About this study.</strong> Some of the images you saw were made by a computer program so that ";
/** What the study was about, in the words of the task the participant did (2AFC, clustering, classification). */
export const DEBRIEFS = {
  "2afc":
    ABOUT +
    "a neural network represents them exactly like one of the photos. Your choices tell us whether people " +
    "see them as alike too. Thank you for helping.</p>",
  cluster:
    ABOUT +
    "a neural network represents them exactly like one of the reference photos. Your matches tell us whether " +
    "people match them to that photo too. Thank you for helping.</p>",
  classification:
    ABOUT +
    "a neural network takes them for a photo of one category. Your answers tell us whether people see that " +
    "category in them too. Thank you for helping.</p>",
};
export const DEFAULT_DEBRIEF = DEBRIEFS["2afc"];

export const debriefFor = (taskType) => DEBRIEFS[taskType] || DEFAULT_DEBRIEF;

/**
 * The end screen: outcome title, debrief (the server's, else the one of `task_type`),
 * the completion code from the server, then the hand-back: a redirect (Prolific, after `redirectDelayMs`) or a form
 * POST to MTurk (`mturk` = {action, method, fields}, also after the delay).
 * Returns a function that cancels the pending redirect / submit.
 */
export function renderCompletion(
  el,
  {
    completion_code,
    redirect_url,
    outcome = "completed",
    message = null,
    debrief_html = null,
    mturk = null,
    task_type = null,
    title = null,
  },
  { redirectDelayMs = 5000, navigate, submitForm, doc = globalThis.document } = {}
) {
  const url = mturk ? null : safeUrl(redirect_url);
  const mturkAction = mturk ? safeUrl(mturk.action) : null;
  const seconds = Math.round(redirectDelayMs / 1000);
  const text = OUTCOME_TEXT[outcome || "completed"] || OUTCOME_TEXT.completed;
  const debrief = (outcome || "completed") === "completed" || outcome === "failed_attention" ? debrief_html || debriefFor(task_type) : "";
  const code = completion_code
    ? `<p id="completion-code-label" class="completion-code-label">Your completion code:</p>
    <p id="completion-code" class="completion-code" aria-labelledby="completion-code-label">${escapeHtml(completion_code)}</p>`
    : "";
  let handBack;
  if (mturkAction) {
    const fields = Object.entries(mturk.fields || {})
      .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`)
      .join("");
    handBack = `<form id="mturk-submit-form" method="POST" action="${escapeHtml(mturkAction)}">${fields}
      <p id="redirect-note">Your HIT will be submitted in <span id="redirect-countdown">${seconds}</span> seconds.</p>
      <p><button type="submit" id="mturk-submit" class="jspsych-btn big-btn">Submit HIT</button></p></form>`;
  } else if (url) {
    handBack = `<p id="redirect-note">You will be redirected in <span id="redirect-countdown">${seconds}</span> seconds.</p>
      <p><a id="completion-redirect" class="jspsych-btn completion-redirect" href="${escapeHtml(url)}">Continue</a></p>`;
  } else {
    handBack = completion_code ? `<p>Please copy this code and paste it where you were asked for it.</p>` : "";
  }
  el.innerHTML = `<div class="completion" data-outcome="${escapeHtml(outcome || "completed")}">
    <h1 class="completion-title" id="completion-title" tabindex="-1">${escapeHtml(title || text.title)}</h1>
    <p id="completion-message">${escapeHtml(message || text.body)}</p>
    ${debrief ? `<div class="debrief server-html" id="debrief">${debrief}</div>` : ""}
    ${code}
    ${handBack}
  </div>`;
  const heading = el.querySelector("#completion-title");
  if (heading && typeof heading.focus === "function") heading.focus();
  if (!url && !mturkAction) return () => {};
  const form = el.querySelector("#mturk-submit-form");
  const go = mturkAction
    ? () => (submitForm ? submitForm(form) : form.submit())
    : () => (navigate ? navigate(url) : globalThis.location.assign(url));
  let left = seconds;
  const countdownEl = el.querySelector("#redirect-countdown");
  const tick = setInterval(() => {
    left = Math.max(0, left - 1);
    if (countdownEl) countdownEl.textContent = String(left);
  }, 1000);
  const timer = setTimeout(() => {
    clearInterval(tick);
    go();
  }, redirectDelayMs);
  return () => {
    clearTimeout(timer);
    clearInterval(tick);
  };
}

/** MTurk preview (assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE): the task description only. */
export function renderPreview(el, { title = "", instructions_html = "", consent_html = "" } = {}) {
  el.innerHTML = `<div class="preview" id="mturk-preview">
    ${title ? `<h1>${escapeHtml(title)}</h1>` : ""}
    <p class="preview-note" role="status">This is a preview. Accept the HIT to start the task.</p>
    <div class="server-html">${instructions_html}</div>
    <div class="server-html">${consent_html}</div>
  </div>`;
}
