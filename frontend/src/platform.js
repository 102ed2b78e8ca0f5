// Crowd-platform adapters: what the page URL says about who this is, and how
// to hand the participant back at the end.
//
// Prolific: ?PROLIFIC_PID=…&STUDY_ID=…&SESSION_ID=…; at the end the browser
//   goes to the redirect URL the server returns (…/submissions/complete?cc=…).
// MTurk (ExternalQuestion): ?assignmentId=…&hitId=…&workerId=…&turkSubmitTo=…
//   assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE is the preview: show the task
//   description only, call no API, store nothing. At the end POST a form to
//   turkSubmitTo + "/mturk/externalSubmit" with assignmentId (+ the code).

export const MTURK_PREVIEW_ID = "ASSIGNMENT_ID_NOT_AVAILABLE";

/** Everything the page URL tells us (all fields optional, "" when absent). */
export function readParams(search = globalThis.location ? globalThis.location.search : "") {
  const q = new URLSearchParams(search);
  const get = (k) => (q.get(k) || "").trim();
  return {
    prolific_pid: get("PROLIFIC_PID"),
    study_id: get("STUDY_ID"),
    session_id: get("SESSION_ID"),
    assignment_id: get("assignmentId"),
    hit_id: get("hitId"),
    worker_id: get("workerId"),
    turk_submit_to: get("turkSubmitTo"),
  };
}

/** "prolific" | "mturk" | "mturk-preview" | "anonymous" */
export function platformOf(params) {
  if (params.assignment_id === MTURK_PREVIEW_ID) return "mturk-preview";
  if (params.assignment_id && params.worker_id) return "mturk";
  if (params.prolific_pid) return "prolific";
  return "anonymous";
}

/** The enroll body: only the identifying fields the platform gave us. */
export function enrollFields(params) {
  const body = {};
  for (const k of ["prolific_pid", "study_id", "session_id", "assignment_id", "hit_id", "worker_id"]) {
    if (params[k]) body[k] = params[k];
  }
  return body;
}

/**
 * The MTurk submit URL, or null when turkSubmitTo is not an http(s) URL.
 * Amazon gives https://www.mturk.com or https://workersandbox.mturk.com.
 */
export function mturkSubmitUrl(turkSubmitTo) {
  if (!turkSubmitTo) return null;
  let u;
  try {
    u = new URL(turkSubmitTo);
  } catch {
    return null;
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") return null;
  return u.origin + u.pathname.replace(/\/+$/, "") + "/mturk/externalSubmit";
}

/**
 * Build (not submit) the MTurk form: POST to turkSubmitTo/mturk/externalSubmit
 * with assignmentId and at least one more field (MTurk requires one).
 */
export function buildMturkForm(doc, { turk_submit_to, assignment_id }, fields = {}) {
  const action = mturkSubmitUrl(turk_submit_to);
  if (!action || !assignment_id) return null;
  const form = doc.createElement("form");
  form.method = "POST";
  form.action = action;
  form.id = "mturk-submit-form";
  const all = { assignmentId: assignment_id, ...fields };
  for (const [name, value] of Object.entries(all)) {
    if (value === undefined || value === null) continue;
    const input = doc.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = String(value);
    form.appendChild(input);
  }
  return form;
}
