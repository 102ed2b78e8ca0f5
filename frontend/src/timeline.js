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

import HtmlButtonResponsePlugin from "@jspsych/plugin-html-button-response";
import Image2afcPlugin from "./plugin-2afc.js";
import ImageClusterPlugin from "./plugin-cluster.js";
import ImageClassifyPlugin, { estimateRefreshRate } from "./plugin-classify.js";
import TaskPlugin from "./plugin-task.js";
import { ApiError } from "./api.js";
import { escapeHtml } from "./html.js";
import { preloadImages } from "./preload.js";
import { backoffDelay, sleep as realSleep, withRetry } from "./retry.js";

export const CLASSIFY = "classification";

export const LOAD_FAILURE_MESSAGE =
  "Sorry, some images could not be loaded, so the study cannot continue on this connection. " +
  "This is not your fault: you get a completion code below.";

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

/** The jsPsych trial description that shows one unit. */
function unitTrial(unit, { progress_current, progress_total, on_answer, quality, practice, classify, noun }) {
  const on_start = () => {
    if (quality) quality.trial = unit.kind === "cluster" ? unit.trials.map((t) => t.id).join(",") : unit.trials[0].id;
  };
  if (unit.kind === "classify") {
    const t = unit.trials[0];
    return {
      type: ImageClassifyPlugin,
      trial_id: t.id,
      query: t.query,
      mask: t.mask || null,
      categories: classify.categories,
      fixation_ms: classify.fixation_ms,
      image_ms: classify.image_ms,
      mask_ms: classify.mask_ms,
      // Evaluated when the trial starts: the estimate is made once, before the first trial.
      refresh_hz: () => classify.refresh_hz(),
      progress_current,
      progress_total,
      progress_noun: noun || (practice ? "Practice" : "Image"),
      on_answer: (a) => on_answer([a]),
      on_start,
    };
  }
  if (unit.kind === "cluster") {
    return {
      type: ImageClusterPlugin,
      references: unit.references,
      items: unit.trials.map((t) => ({ trial_id: t.id, image: t.query })),
      progress_current,
      progress_total,
      progress_noun: practice ? "Practice" : "Set",
      on_answer,
      on_start,
    };
  }
  const t = unit.trials[0];
  return {
    type: Image2afcPlugin,
    trial_id: t.id,
    query: t.query,
    options: t.options,
    progress_current,
    progress_total,
    progress_noun: practice ? "Practice" : "Image",
    on_answer: (a) => on_answer([a]),
    on_start,
  };
}

/**
 * Save all answers, then POST complete. On 409 (server is missing answers)
 * flush again and retry a few times before giving up with a clear message.
 */
export async function saveAndComplete({ api, token, outbox, onFailing = () => {}, sleep = realSleep, max409 = 4 }) {
  for (let tries409 = 0; ; tries409++) {
    await outbox.whenEmpty();
    try {
      return await withRetry(() => api.complete(token), { onFailing, sleep });
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 409) throw err;
      if (tries409 >= max409) {
        throw new ApiError(
          409,
          "Some of your answers did not reach our server. Please reload this page to answer the missing images again."
        );
      }
      await sleep(backoffDelay(tries409, { base: 500, max: 5000 }));
    }
  }
}

/** The end fields of a complete / abort / enroll body. */
export function endOf(body) {
  return {
    completion_code: body.completion_code ?? null,
    redirect_url: body.redirect_url ?? null,
    outcome: body.outcome ?? null,
    mturk_submit: body.mturk_submit ?? null,
    debrief_html: body.debrief_html ?? null,
  };
}

/** POST one practice answer now (retrying 5xx / network); resolves to the response body. */
async function postPractice({ api, token, answer, uuid, onFailing, sleep }) {
  const body = { trial: answer.trial_id, choice: answer.choice, rt_ms: answer.rt_ms, idempotency_key: uuid(), timing: answer.timing };
  return withRetry(
    async () => {
      const { status, data } = await api.postResponse(token, body);
      if (status >= 200 && status < 300) return data || {};
      if (status === 409) return { ...(data || {}), conflict: true };
      throw new ApiError(status, (data && data.message) || `HTTP ${status}`, data);
    },
    { onFailing, sleep }
  );
}

/**
 * Whether a body from the server (an answer's response, `next`, …) says the session is over: a final
 * outcome or status, or a failed screening block.
 */
export function saysEnded(body) {
  if (!body || typeof body !== "object") return false;
  if (body.screening && body.screening.passed === false) return true;
  if (body.ended === true || body.outcome) return true;
  return Boolean(body.status && body.status !== "active");
}

export function feedbackHtml({ correct, total, unknown = 0, hint: hintText = "<p>Look closely at the images: which one is most alike?</p>" }) {
  if (unknown > 0) {
    // The server did not say (e.g. a replayed answer): no verdict rather than a wrong one.
    return '<div class="feedback" role="status"><p class="feedback-title" id="feedback-title">Your answer has been saved.</p></div>';
  }
  const all = correct === total;
  const cls = all ? "feedback-correct" : "feedback-incorrect";
  const title = total === 1 ? (all ? "Correct!" : "Not quite.") : all ? "All correct!" : `${correct} of ${total} correct.`;
  const hint = all ? "" : hintText;
  return `<div class="feedback ${cls}" role="status"><p class="feedback-title" id="feedback-title">${title}</p>${hint}</div>`;
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
  const failingHook = connection || (() => () => {});
  const type = taskType || trialsData.task_type || enrollment.task_type || "2afc";
  const state = { end: null, stage: "arrived", refresh_hz: refreshHz };
  const classify =
    type === CLASSIFY
      ? { ...classificationSettings(enrollment.classification ? enrollment : trialsData), refresh_hz: () => state.refresh_hz }
      : null;
  const stage = (s) => () => {
    state.stage = s;
    onStage(s);
  };
  // Skip the remaining screens once the session has an end (load failure, failed practice) or the
  // server said it ended (e.g. the reservation expired): complete then fetches the code for that outcome.
  const going = () => !state.end && !isEnded();

  const pending = outbox.pendingTrials(token);
  const remaining = remainingTrials(trialsData, pending);
  const practiceLeft = remainingTrials({ trials: trialsData.practice || [], done: trialsData.done }, pending);
  const units = toUnits(type, remaining, trialsData.screens);
  const practiceUnits = toUnits(type, practiceLeft, trialsData.practice_screens);
  const allUnits = toUnits(type, trialsData.trials || [], trialsData.screens);
  const totalUnits = allUnits.length;
  const unitsBefore = totalUnits - units.length;
  const practiceTotalUnits = toUnits(type, trialsData.practice || [], trialsData.practice_screens).length;
  // Classification: a screening block between practice and the main trials.
  const screeningAll = classify ? trialsData.screening || [] : [];
  const screeningUnits = toUnits(type, remainingTrials({ trials: screeningAll, done: trialsData.done }, pending));
  const timeline = [];

  if (!enrollment.consented) {
    timeline.push({
      type: HtmlButtonResponsePlugin,
      stimulus: `<div class="server-html consent-html">${enrollment.consent_html || ""}</div>`,
      choices: ["I agree"],
      button_html: () => '<button type="button" id="consent-agree" class="jspsych-btn big-btn">I agree</button>',
      button_layout: "flex",
      css_classes: ["text-screen"],
      on_start: stage("consent"),
    });
    timeline.push({
      type: TaskPlugin,
      message: "<p>One moment…</p>",
      task: () => withRetry(() => api.consent(token), { onFailing: failingHook("consent"), sleep }).then(() => ({})),
    });
  }

  if (units.length > 0 || practiceUnits.length > 0 || screeningUnits.length > 0) {
    timeline.push({
      type: HtmlButtonResponsePlugin,
      stimulus: `<div class="server-html instructions-html">${enrollment.instructions_html || ""}</div>`,
      choices: ["Start"],
      button_html: () => '<button type="button" id="instructions-start" class="jspsych-btn big-btn">Start</button>',
      button_layout: "flex",
      css_classes: ["text-screen"],
      on_start: stage("instructions"),
    });

    const images = [...new Set([...practiceUnits, ...screeningUnits, ...units].flatMap(unitImages))];
    timeline.push({
      type: TaskPlugin,
      message:
        '<div class="preload-screen"><p class="preload-message" id="preload-message">Loading images…</p>' +
        `<progress id="preload-progress" max="${images.length}" value="0" aria-labelledby="preload-message"></progress></div>`,
      task: async ({ display_element }) => {
        const bar = display_element.querySelector("#preload-progress");
        const result = await preloadImages(images, {
          tries: preloadTries,
          loadImage,
          sleep,
          onProgress: (done) => {
            if (bar) bar.value = done;
          },
        });
        // Timed trials count frames: estimate the refresh rate once, before the first trial, if not done yet.
        if (classify && !(state.refresh_hz > 0)) state.refresh_hz = await measureRefresh();
        if (!result.failed.length) return { preload_ms: result.ms, preload_failed: 0 };
        const detail = JSON.stringify(result.failed.map((f) => ({ reason: f.reason, tries: f.tries }))).slice(0, 1000);
        if (quality) quality.record("load_failure", { failed: result.failed.length, of: images.length });
        const body = await withRetry(() => api.abort(token, "load_failure", detail), {
          onFailing: failingHook("abort"),
          sleep,
        });
        state.end = { ...endOf(body), outcome: body.outcome || "technical", message: LOAD_FAILURE_MESSAGE };
        return { preload_ms: result.ms, preload_failed: result.failed.length };
      },
    });

    // Practice: each unit, then feedback from the server.
    practiceUnits.forEach((unit, i) => {
      let answers = [];
      let reveal = null;
      timeline.push({
        timeline: [
          unitTrial(unit, {
            progress_current: practiceTotalUnits - practiceUnits.length + i + 1,
            progress_total: practiceTotalUnits,
            on_answer: (a) => {
              answers = a;
            },
            quality,
            practice: true,
            classify,
          }),
          {
            type: TaskPlugin,
            message: "<p>One moment…</p>",
            button_id: "practice-continue",
            task: async () => {
              let correct = 0;
              let unknown = 0;
              let passed = null;
              reveal = null;
              for (const answer of answers) {
                const body = await postPractice({ api, token, answer, uuid, onFailing: failingHook("practice"), sleep });
                if (!body.feedback) unknown++;
                else if (body.feedback.correct) correct++;
                // Classification: the server may name the right category (feedback.correct_choice, its index).
                if (classify && body.feedback && Number.isInteger(body.feedback.correct_choice)) {
                  reveal = classify.categories[body.feedback.correct_choice] ?? null;
                }
                if (body.practice && body.practice.passed != null) passed = body.practice.passed;
              }
              if (passed === false) {
                const body = await saveAndComplete({ api, token, outbox, onFailing: failingHook("complete"), sleep });
                state.end = endOf(body);
              }
              return { practice_correct: correct, practice_total: answers.length, practice_unknown: unknown, practice_passed: passed };
            },
            render: (r) =>
              feedbackHtml({
                correct: r.practice_correct,
                total: r.practice_total,
                unknown: r.practice_unknown,
                ...(classify
                  ? { hint: reveal ? `<p>It was: <strong class="feedback-answer">${escapeHtml(reveal)}</strong>.</p>` : "" }
                  : type === "cluster"
                    ? { hint: "<p>Look closely at the images: which photo does each one belong with?</p>" }
                    : {}),
              }),
          },
        ],
        conditional_function: going,
        on_timeline_start: stage("practice"),
      });
    });

    if (practiceUnits.length > 0 && (units.length > 0 || screeningUnits.length > 0)) {
      timeline.push({
        timeline: [
          {
            type: HtmlButtonResponsePlugin,
            stimulus:
              '<div class="message-screen"><h2>Practice done</h2><p>Now the real task begins. ' +
              "From here on you will not be told whether your answers are right.</p></div>",
            choices: ["Continue"],
            button_html: () => '<button type="button" id="practice-done-start" class="jspsych-btn big-btn">Continue</button>',
            button_layout: "flex",
          },
        ],
        conditional_function: going,
      });
    }

    const enqueue = (answers) => {
      for (const a of answers) outbox.enqueue({ token, trial: a.trial_id, choice: a.choice, rt_ms: a.rt_ms, timing: a.timing });
    };
    if (screeningUnits.length > 0) {
      screeningUnits.forEach((unit, i) => {
        timeline.push({
          timeline: [
            unitTrial(unit, {
              progress_current: screeningAll.length - screeningUnits.length + i + 1,
              progress_total: screeningAll.length,
              on_answer: enqueue,
              quality,
              classify,
            }),
          ],
          conditional_function: going,
          on_timeline_start: i === 0 ? stage("trials") : undefined,
        });
      });
      // Did the participant pass? Every screening answer saved, then ask the server: a failed block has
      // ended the session (screened out), and complete returns the code for that outcome.
      timeline.push({
        timeline: [
          {
            type: TaskPlugin,
            message: "<p>One moment…</p>",
            task: async () => {
              await outbox.whenEmpty();
              let ended = isEnded();
              if (!ended) {
                try {
                  ended = saysEnded(await withRetry(() => api.next(token), { onFailing: failingHook("next"), sleep }));
                } catch (err) {
                  if (!(err instanceof ApiError)) throw err;
                  // 409: the session is over; anything else: no verdict, go on (a main answer would be refused anyway).
                  ended = err.status === 409;
                }
              }
              if (ended) state.end = endOf(await saveAndComplete({ api, token, outbox, onFailing: failingHook("complete"), sleep }));
              return { screening_ended: ended };
            },
          },
        ],
        conditional_function: () => !state.end,
      });
      if (units.length > 0) {
        timeline.push({
          timeline: [
            {
              type: HtmlButtonResponsePlugin,
              stimulus:
                '<div class="message-screen"><h2>First part done</h2><p>' +
                `The main part has ${units.length === 1 ? "1 image" : `${units.length} images`}, shown the same way.</p></div>`,
              choices: ["Continue"],
              button_html: () => '<button type="button" id="screening-done-start" class="jspsych-btn big-btn">Continue</button>',
              button_layout: "flex",
            },
          ],
          conditional_function: going,
        });
      }
    }

    units.forEach((unit, i) => {
      timeline.push({
        timeline: [
          unitTrial(unit, {
            progress_current: unitsBefore + i + 1,
            progress_total: totalUnits,
            on_answer: enqueue,
            quality,
            classify,
          }),
        ],
        conditional_function: going,
        on_timeline_start: i === 0 ? stage("trials") : undefined,
      });
    });
  }

  timeline.push({
    timeline: [
      {
        type: TaskPlugin,
        message: '<p class="saving-message">Saving your answers…</p>',
        task: async () => {
          const body = await saveAndComplete({ api, token, outbox, onFailing: failingHook("complete"), sleep });
          state.end = endOf(body);
          return { completion_code: body.completion_code, redirect_url: body.redirect_url ?? null };
        },
      },
    ],
    conditional_function: () => !state.end,
  });

  return { timeline, remaining, units, practiceUnits, screeningUnits, state };
}
