// Builds the jsPsych timeline for one participant session from API data.
//
//   consent (unless already given) → record consent
//   → instructions → preload images (+ one retry of failed files)
//   → one 2AFC screen per remaining trial → save answers + complete.
//
// Everything that talks to the network is passed in (api, outbox), so the
// timeline can run under jsPsych's simulation mode against a fake API.

import HtmlButtonResponsePlugin from "@jspsych/plugin-html-button-response";
import PreloadPlugin from "@jspsych/plugin-preload";
import Image2afcPlugin from "./plugin-2afc.js";
import TaskPlugin from "./plugin-task.js";
import { ApiError } from "./api.js";
import { backoffDelay, sleep as realSleep, withRetry } from "./retry.js";

export const PRELOAD_ERROR_HTML =
  '<div class="message-screen"><p class="error-message" role="alert">Sorry, some images could not be loaded. ' +
  "Please check your internet connection and reload this page to try again.</p></div>";

/** Trials still to be answered: not in `done` and not waiting in the outbox. */
export function remainingTrials(trialsData, pending = []) {
  const skip = new Set([...(trialsData.done || []), ...pending]);
  return (trialsData.trials || []).filter((t) => !skip.has(t.id));
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

/**
 * @param {object} o
 * @param {object} o.api          from createApi()
 * @param {string} o.token        session token
 * @param {object} o.enrollment   enroll response
 * @param {object} o.trialsData   GET trials response
 * @param {import('./outbox.js').Outbox} o.outbox
 * @param {(name:string) => (failing:boolean) => void} [o.connection]  banner hook factory
 * @param {(ms:number) => Promise<void>} [o.sleep]
 * @returns {{timeline: object[], remaining: object[]}}
 */
export function buildTimeline({ api, token, enrollment, trialsData, outbox, connection, sleep = realSleep }) {
  const failingHook = connection || (() => () => {});
  const remaining = remainingTrials(trialsData, outbox.pendingTrials(token));
  const total = trialsData.total ?? (trialsData.trials || []).length;
  const answeredBefore = total - remaining.length;
  const timeline = [];

  if (!enrollment.consented) {
    timeline.push({
      type: HtmlButtonResponsePlugin,
      stimulus: `<div class="server-html consent-html">${enrollment.consent_html || ""}</div>`,
      choices: ["I agree"],
      button_html: () => '<button type="button" id="consent-agree" class="jspsych-btn big-btn">I agree</button>',
      button_layout: "flex",
      css_classes: ["text-screen"],
    });
    timeline.push({
      type: TaskPlugin,
      message: "<p>One moment…</p>",
      task: () => withRetry(() => api.consent(token), { onFailing: failingHook("consent"), sleep }).then(() => ({})),
    });
  }

  if (remaining.length > 0) {
    timeline.push({
      type: HtmlButtonResponsePlugin,
      stimulus: `<div class="server-html instructions-html">${enrollment.instructions_html || ""}</div>`,
      choices: ["Start"],
      button_html: () => '<button type="button" id="instructions-start" class="jspsych-btn big-btn">Start</button>',
      button_layout: "flex",
      css_classes: ["text-screen"],
    });

    const images = [...new Set(remaining.flatMap((t) => [t.query, ...t.options]))];
    const failed = new Set();
    timeline.push({
      type: PreloadPlugin,
      images,
      message: '<p class="preload-message">Loading images…</p>',
      show_progress_bar: true,
      continue_after_error: true,
      on_error: (src) => failed.add(src),
      on_success: (src) => failed.delete(src),
    });
    // Retry each failed file once more; if still failing, stop with a message.
    timeline.push({
      timeline: [
        {
          type: PreloadPlugin,
          images: () => [...failed],
          message: '<p class="preload-message">Loading images (second try)…</p>',
          show_progress_bar: true,
          continue_after_error: false,
          error_message: PRELOAD_ERROR_HTML,
        },
      ],
      conditional_function: () => failed.size > 0,
    });

    remaining.forEach((t, i) => {
      timeline.push({
        type: Image2afcPlugin,
        trial_id: t.id,
        query: t.query,
        options: t.options,
        progress_current: answeredBefore + i + 1,
        progress_total: total,
        on_answer: ({ trial_id, choice, rt_ms }) => outbox.enqueue({ token, trial: trial_id, choice, rt_ms }),
      });
    });
  }

  timeline.push({
    type: TaskPlugin,
    message: '<p class="saving-message">Saving your answers…</p>',
    task: async () => {
      const { completion_code, redirect_url } = await saveAndComplete({
        api,
        token,
        outbox,
        onFailing: failingHook("complete"),
        sleep,
      });
      return { completion_code, redirect_url: redirect_url ?? null };
    },
  });

  return { timeline, remaining };
}
