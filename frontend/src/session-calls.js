// What the timeline asks the server beyond the outbox: a practice answer (its response carries the
// feedback), completing the session once every answer is saved, and whether a body says the session ended.

import { ApiError } from "./api.js";
import { backoffDelay, sleep as realSleep, withRetry } from "./retry.js";

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
export async function postPractice({ api, token, answer, uuid, onFailing, sleep }) {
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

