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

export function renderMessage(el, html) {
  el.innerHTML = `<div class="message-screen">${html}</div>`;
}

export function renderError(el, message) {
  el.innerHTML = `<div class="message-screen"><p class="error-message" role="alert">${escapeHtml(message)}</p></div>`;
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

/**
 * Show the completion code (from the server) and, if given, a link to the
 * redirect URL plus an automatic redirect after `redirectDelayMs`.
 * Returns a function that cancels the pending redirect.
 */
export function renderCompletion(el, { completion_code, redirect_url }, { redirectDelayMs = 5000, navigate } = {}) {
  const url = safeUrl(redirect_url);
  const seconds = Math.round(redirectDelayMs / 1000);
  el.innerHTML = `<div class="completion">
    <h1 class="completion-title">Thank you!</h1>
    <p>All your answers have been saved.</p>
    <p id="completion-code-label" class="completion-code-label">Your completion code:</p>
    <p id="completion-code" class="completion-code" aria-labelledby="completion-code-label">${escapeHtml(completion_code)}</p>
    ${
      url
        ? `<p id="redirect-note">You will be redirected in <span id="redirect-countdown">${seconds}</span> seconds.</p>
           <p><a id="completion-redirect" class="jspsych-btn completion-redirect" href="${escapeHtml(url)}">Continue</a></p>`
        : `<p>Please copy this code and paste it where you were asked for it.</p>`
    }
  </div>`;
  if (!url) return () => {};
  const go = navigate || ((u) => globalThis.location.assign(u));
  let left = seconds;
  const countdownEl = el.querySelector("#redirect-countdown");
  const tick = setInterval(() => {
    left = Math.max(0, left - 1);
    if (countdownEl) countdownEl.textContent = String(left);
  }, 1000);
  const timer = setTimeout(() => {
    clearInterval(tick);
    go(url);
  }, redirectDelayMs);
  return () => {
    clearTimeout(timer);
    clearInterval(tick);
  };
}
