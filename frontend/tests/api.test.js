import { describe, expect, it } from "vitest";
import { ApiError, createApi } from "../src/api.js";
import { CONFIG } from "./fake-server.js";

function recorder(status, body) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init, body: init.body ? JSON.parse(init.body) : undefined });
    return { status, text: async () => (body === undefined ? "" : JSON.stringify(body)) };
  };
  return { calls, fetch };
}

describe("api", () => {
  it("enroll leaves out empty fields", async () => {
    const r = recorder(201, { token: "t" });
    const api = createApi(CONFIG, { fetch: r.fetch });
    await api.enroll({ prolific_pid: "P", study_id: "", session_id: undefined });
    expect(r.calls[0].url).toBe("/api/p/surveys/demo/enroll");
    expect(r.calls[0].init.method).toBe("POST");
    expect(r.calls[0].body).toEqual({ prolific_pid: "P" });
  });

  it("builds session URLs and bodies", async () => {
    const r = recorder(201, {});
    const api = createApi(CONFIG, { fetch: r.fetch });
    await api.postResponse("tok", { trial: "t_1", choice: 1, rt_ms: 5, idempotency_key: "k", extra: "x" });
    expect(r.calls[0].url).toBe("/api/p/sessions/tok/responses");
    expect(r.calls[0].body).toEqual({ trial: "t_1", choice: 1, rt_ms: 5, idempotency_key: "k" });
    await api.trials("tok");
    expect(r.calls[1].url).toBe("/api/p/sessions/tok/trials");
    expect(r.calls[1].init.method).toBe("GET");
  });

  it("throws ApiError with the server message on 4xx, retryable on 5xx / network", async () => {
    const api = createApi(CONFIG, { fetch: recorder(404, { message: "Survey not live" }).fetch });
    const err = await api.enroll({}).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(404);
    expect(err.message).toBe("Survey not live");
    expect(err.retryable).toBe(false);

    const api5 = createApi(CONFIG, { fetch: recorder(503, undefined).fetch });
    expect((await api5.complete("t").catch((e) => e)).retryable).toBe(true);

    const apiNet = createApi(CONFIG, { fetch: async () => { throw new TypeError("offline"); } });
    const netErr = await apiNet.consent("t").catch((e) => e);
    expect(netErr.status).toBe(0);
    expect(netErr.retryable).toBe(true);
  });

  it("complete returns the 409 body on the error", async () => {
    const api = createApi(CONFIG, { fetch: recorder(409, { message: "missing", missing: 2 }).fetch });
    const err = await api.complete("t").catch((e) => e);
    expect(err.status).toBe(409);
    expect(err.data.missing).toBe(2);
  });
});
