// The steps of a participant session's timeline (see timeline.js for their order). Every builder takes
// the `session`: {api, token, outbox, quality, sleep, uuid, isEnded, state, type, classify, failing(name),
// stage(name), going()} as buildTimeline makes it.

import HtmlButtonResponsePlugin from "@jspsych/plugin-html-button-response";
import Image2afcPlugin from "./plugin-2afc.js";
import ImageClusterPlugin from "./plugin-cluster.js";
import ImageClassifyPlugin from "./plugin-classify.js";
import TaskPlugin from "./plugin-task.js";
import { ApiError } from "./api.js";
import { escapeHtml } from "./html.js";
import { preloadImages } from "./preload.js";
import { withRetry } from "./retry.js";
import { endOf, postPractice, saveAndComplete, saysEnded } from "./session-calls.js";

export const LOAD_FAILURE_MESSAGE =
  "Sorry, some images could not be loaded, so the study cannot continue on this connection. " +
  "This is not your fault: you get a completion code below.";

const ONE_MOMENT = "<p>One moment…</p>";

/** A screen of server or fixed HTML with one big button (`id`, `label`) that continues. */
function buttonScreen({ stimulus, id, label, ...rest }) {
  return {
    type: HtmlButtonResponsePlugin,
    stimulus,
    choices: [label],
    button_html: () => `<button type="button" id="${id}" class="jspsych-btn big-btn">${label}</button>`,
    button_layout: "flex",
    ...rest,
  };
}

/** The consent screen and recording the consent. */
export function consentSteps(session, enrollment) {
  const { api, token, sleep } = session;
  return [
    buttonScreen({
      stimulus: `<div class="server-html consent-html">${enrollment.consent_html || ""}</div>`,
      id: "consent-agree",
      label: "I agree",
      css_classes: ["text-screen"],
      on_start: session.stage("consent"),
    }),
    {
      type: TaskPlugin,
      message: ONE_MOMENT,
      task: () => withRetry(() => api.consent(token), { onFailing: session.failing("consent"), sleep }).then(() => ({})),
    },
  ];
}

export function instructionsStep(session, enrollment) {
  return buttonScreen({
    stimulus: `<div class="server-html instructions-html">${enrollment.instructions_html || ""}</div>`,
    id: "instructions-start",
    label: "Start",
    css_classes: ["text-screen"],
    on_start: session.stage("instructions"),
  });
}

/** Preload every image (per-file retry); a load failure reports `abort` and ends the session with the server's code. */
export function preloadStep(session, images, { preloadTries, loadImage, measureRefresh }) {
  const { api, token, quality, sleep, state } = session;
  return {
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
      if (session.classify && !(state.refresh_hz > 0)) state.refresh_hz = await measureRefresh();
      if (!result.failed.length) return { preload_ms: result.ms, preload_failed: 0 };
      const detail = JSON.stringify(result.failed.map((f) => ({ reason: f.reason, tries: f.tries }))).slice(0, 1000);
      if (quality) quality.record("load_failure", { failed: result.failed.length, of: images.length });
      const body = await withRetry(() => api.abort(token, "load_failure", detail), { onFailing: session.failing("abort"), sleep });
      state.end = { ...endOf(body), outcome: body.outcome || "technical", message: LOAD_FAILURE_MESSAGE };
      return { preload_ms: result.ms, preload_failed: result.failed.length };
    },
  };
}

/** Practice: each unit (of `total` in all, the first ones maybe done before), then feedback from the server. */
export function practiceSteps(session, units, total) {
  return units.map((unit, i) => {
    let answers = [];
    return {
      timeline: [
        unitTrial(session, unit, {
          progress_current: total - units.length + i + 1,
          progress_total: total,
          on_answer: (a) => {
            answers = a;
          },
          practice: true,
        }),
        feedbackStep(session, () => answers),
      ],
      conditional_function: session.going,
      on_timeline_start: session.stage("practice"),
    };
  });
}

/** POST a practice unit's answers now and show the verdict; a failed practice completes the session. */
function feedbackStep(session, answersOf) {
  const { api, token, outbox, uuid, sleep, state, classify } = session;
  let reveal = null;
  return {
    type: TaskPlugin,
    message: ONE_MOMENT,
    button_id: "practice-continue",
    task: async () => {
      const answers = answersOf();
      let correct = 0;
      let unknown = 0;
      let passed = null;
      reveal = null;
      for (const answer of answers) {
        const body = await postPractice({ api, token, answer, uuid, onFailing: session.failing("practice"), sleep });
        if (!body.feedback) unknown++;
        else if (body.feedback.correct) correct++;
        // Classification: the server may name the right category (feedback.correct_choice, its index).
        if (classify && body.feedback && Number.isInteger(body.feedback.correct_choice)) {
          reveal = classify.categories[body.feedback.correct_choice] ?? null;
        }
        if (body.practice && body.practice.passed != null) passed = body.practice.passed;
      }
      if (passed === false) {
        state.end = endOf(await saveAndComplete({ api, token, outbox, onFailing: session.failing("complete"), sleep }));
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
          : session.type === "cluster"
            ? { hint: "<p>Look closely at the images: which photo does each one belong with?</p>" }
            : {}),
      }),
  };
}

export function practiceDoneStep(session) {
  return {
    timeline: [
      buttonScreen({
        stimulus:
          '<div class="message-screen"><h2>Practice done</h2><p>Now the real task begins. ' +
          "From here on you will not be told whether your answers are right.</p></div>",
        id: "practice-done-start",
        label: "Continue",
      }),
    ],
    conditional_function: session.going,
  };
}

/** Units whose answers go through the durable outbox (screening and main), of `total` in all. */
export function answeredSteps(session, units, total) {
  const { outbox, token } = session;
  const enqueue = (answers) => {
    for (const a of answers) outbox.enqueue({ token, trial: a.trial_id, choice: a.choice, rt_ms: a.rt_ms, timing: a.timing });
  };
  return units.map((unit, i) => ({
    timeline: [unitTrial(session, unit, { progress_current: total - units.length + i + 1, progress_total: total, on_answer: enqueue })],
    conditional_function: session.going,
    on_timeline_start: i === 0 ? session.stage("trials") : undefined,
  }));
}

/**
 * Did the participant pass the screening block? Every screening answer saved, then ask the server: a failed
 * block has ended the session (screened out), and complete returns the code for that outcome.
 */
export function screeningCheckStep(session) {
  const { api, token, outbox, sleep, state, isEnded } = session;
  return {
    timeline: [
      {
        type: TaskPlugin,
        message: ONE_MOMENT,
        task: async () => {
          await outbox.whenEmpty();
          let ended = isEnded();
          if (!ended) {
            try {
              ended = saysEnded(await withRetry(() => api.next(token), { onFailing: session.failing("next"), sleep }));
            } catch (err) {
              if (!(err instanceof ApiError)) throw err;
              // 409: the session is over; anything else: no verdict, go on (a main answer would be refused anyway).
              ended = err.status === 409;
            }
          }
          if (ended) state.end = endOf(await saveAndComplete({ api, token, outbox, onFailing: session.failing("complete"), sleep }));
          return { screening_ended: ended };
        },
      },
    ],
    conditional_function: () => !state.end,
  };
}

export function screeningDoneStep(session, mainUnits) {
  return {
    timeline: [
      buttonScreen({
        stimulus:
          '<div class="message-screen"><h2>First part done</h2><p>' +
          `The main part has ${mainUnits === 1 ? "1 image" : `${mainUnits} images`}, shown the same way.</p></div>`,
        id: "screening-done-start",
        label: "Continue",
      }),
    ],
    conditional_function: session.going,
  };
}

/** Save every answer and complete (skipped when the session already has its end). */
export function completeStep(session) {
  const { api, token, outbox, sleep, state } = session;
  return {
    timeline: [
      {
        type: TaskPlugin,
        message: '<p class="saving-message">Saving your answers…</p>',
        task: async () => {
          const body = await saveAndComplete({ api, token, outbox, onFailing: session.failing("complete"), sleep });
          state.end = endOf(body);
          return { completion_code: body.completion_code, redirect_url: body.redirect_url ?? null };
        },
      },
    ],
    conditional_function: () => !state.end,
  };
}

/** The jsPsych trial description that shows one unit. */
function unitTrial({ quality, classify }, unit, { progress_current, progress_total, on_answer, practice }) {
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
      progress_noun: practice ? "Practice" : "Image",
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

