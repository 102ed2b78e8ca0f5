// Thin fetch wrappers around the participant HTTP API.
//
// Every call returns or throws in a predictable way:
//   - `request()` resolves to {status, data} for ANY HTTP status and only
//     rejects on a network error (fetch itself failing).
//   - The named helpers throw an ApiError for non-2xx answers so callers can
//     decide what to do with `err.status` (0 = network error).

export class ApiError extends Error {
  constructor(status, message, data = null) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 for network errors
    this.data = data;
  }

  /** 5xx and network errors are worth retrying; 4xx are not. */
  get retryable() {
    return this.status === 0 || this.status >= 500;
  }
}

/** One JSON request: {status, data} for ANY HTTP status (data null without a JSON body); ApiError(0) on a network
 * error. */
async function jsonRequest(doFetch, method, url, body) {
  const init = {
    method,
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await doFetch(url, init);
  } catch (err) {
    throw new ApiError(0, "Network error: " + (err && err.message ? err.message : String(err)));
  }
  let data = null;
  try {
    const text = await res.text();
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  return { status: res.status, data };
}

/**
 * @param {{enroll_url: string, session_base: string}} config
 * @param {{fetch?: typeof fetch}} [deps]
 */
export function createApi(config, { fetch: fetchImpl } = {}) {
  const doFetch = fetchImpl || ((...args) => globalThis.fetch(...args));
  const base = config.session_base.endsWith("/") ? config.session_base : config.session_base + "/";
  const sessionUrl = (token, path) => `${base}${encodeURIComponent(token)}/${path}`;

  const request = (method, url, body) => jsonRequest(doFetch, method, url, body);

  async function call(method, url, body) {
    const { status, data } = await request(method, url, body);
    if (status >= 200 && status < 300) return { status, data };
    const message = (data && data.message) || `Request failed (HTTP ${status})`;
    throw new ApiError(status, message, data);
  }

  return {
    request,

    /** POST enroll; body fields that are empty are left out (see platform.enrollFields). */
    enroll(fields = {}) {
      const body = {};
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined && v !== null && v !== "") body[k] = v;
      }
      return call("POST", config.enroll_url, body).then((r) => r.data);
    },

    consent(token) {
      return call("POST", sessionUrl(token, "consent"), {}).then((r) => r.data);
    },

    trials(token) {
      return call("GET", sessionUrl(token, "trials")).then((r) => r.data);
    },

    /**
     * POST one answer. Resolves to {status, data} whatever the HTTP status
     * (the outbox classifies it); rejects with ApiError(0) on network errors.
     * `timing` (classification: what the screen showed) is sent only when present.
     */
    postResponse(token, { trial, choice, rt_ms, idempotency_key, timing }) {
      const body = { trial, choice, rt_ms, idempotency_key };
      if (timing != null) body.timing = timing;
      return request("POST", sessionUrl(token, "responses"), body);
    },

    /** GET next: the first unanswered entry (throws ApiError, e.g. 409 once the session ended). */
    next(token) {
      return call("GET", sessionUrl(token, "next")).then((r) => r.data);
    },

    /** Any session POST that must succeed (throws ApiError otherwise). */
    post(token, path, body = {}) {
      return call("POST", sessionUrl(token, path), body).then((r) => r.data);
    },

    /** POST quality events: {events:[…], client?}. */
    events(token, body) {
      return call("POST", sessionUrl(token, "events"), body).then((r) => r.data);
    },

    heartbeat(token, stage) {
      return call("POST", sessionUrl(token, "heartbeat"), { stage }).then((r) => r.data);
    },

    /** Technical exit (e.g. images failed to load): resolves to the completion body. */
    abort(token, reason, detail = "") {
      return call("POST", sessionUrl(token, "abort"), { reason, detail }).then((r) => r.data);
    },

    /** The participant withdraws. */
    withdraw(token) {
      return call("POST", sessionUrl(token, "return"), {}).then((r) => r.data);
    },

    complete(token) {
      return call("POST", sessionUrl(token, "complete"), {}).then((r) => r.data);
    },
  };
}
