// Small helpers for retrying with exponential backoff.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Delay before retry number `attempt` (0-based): base * 2^attempt, capped. */
export function backoffDelay(attempt, { base = 500, max = 5000 } = {}) {
  return Math.min(max, base * 2 ** Math.min(attempt, 20));
}

/**
 * Run `fn` until it succeeds or throws a non-retryable error.
 * An error is retryable when `err.retryable` is true (see ApiError).
 * `onFailing(bool)` is told when we start / stop failing (for the banner).
 */
export async function withRetry(fn, { onFailing = () => {}, sleep: sleepFn = sleep, base, max } = {}) {
  let attempt = 0;
  for (;;) {
    try {
      const result = await fn();
      if (attempt > 0) onFailing(false);
      return result;
    } catch (err) {
      if (!err || !err.retryable) {
        if (attempt > 0) onFailing(false);
        throw err;
      }
      if (attempt === 0) onFailing(true);
      await sleepFn(backoffDelay(attempt, { base, max }));
      attempt++;
    }
  }
}
