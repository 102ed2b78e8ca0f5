import { describe, expect, it, vi } from "vitest";
import { Outbox, classifyStatus } from "../src/outbox.js";
import { memoryStorage } from "./fake-server.js";

const KEY = "iri-survey:demo:outbox";
const noSleep = () => Promise.resolve();

function makeOutbox(storage, send, extra = {}) {
  return new Outbox({ storage, key: KEY, send, sleep: noSleep, ...extra });
}

describe("Outbox", () => {
  it("persists items before sending and keeps them across a reload", async () => {
    const storage = memoryStorage();
    const never = () => new Promise(() => {}); // the page "dies" mid-request
    const a = makeOutbox(storage, never);
    const item = a.enqueue({ token: "tok", trial: "t_1", choice: 0, rt_ms: 500 });
    a.enqueue({ token: "tok", trial: "t_2", choice: 1, rt_ms: 600 });
    expect(JSON.parse(storage.getItem(KEY))).toHaveLength(2);

    const sent = [];
    const b = makeOutbox(storage, async (i) => (sent.push(i), { status: 201 }));
    expect(b.size).toBe(2);
    expect(b.pendingTrials("tok")).toEqual(["t_1", "t_2"]);
    await b.flush();
    expect(sent.map((i) => i.trial)).toEqual(["t_1", "t_2"]);
    expect(sent[0].idempotency_key).toBe(item.idempotency_key);
    expect(b.size).toBe(0);
    expect(storage.getItem(KEY)).toBeNull();
  });

  it("still counts a leftover answer as given once it got through, for a trial list fetched before it did", async () => {
    // After a reload the page sends its leftover answers and fetches the session's answered trials at once: if the
    // answers get through in between, neither the server's list nor the queue names them, and the participant
    // would be shown a screen they had already answered.
    const storage = memoryStorage();
    makeOutbox(storage, () => new Promise(() => {})).enqueue({ token: "tok", trial: "t_1", choice: 0, rt_ms: 500 });

    const reloaded = makeOutbox(storage, async () => ({ status: 201 }));
    await reloaded.flush();

    expect(reloaded.size).toBe(0);
    expect(reloaded.pendingTrials("tok")).toEqual(["t_1"]);
    expect(reloaded.pendingTrials("other")).toEqual([]);
  });

  it("retries 5xx and network errors until confirmed, with the same key and capped backoff", async () => {
    const storage = memoryStorage();
    const answers = [503, "net", 500, "net", 502, 201];
    const sent = [];
    const delays = [];
    const statuses = [];
    const ob = makeOutbox(
      storage,
      async (item) => {
        sent.push(item.idempotency_key);
        const a = answers.shift();
        if (a === "net") throw new TypeError("Failed to fetch");
        return { status: a };
      },
      {
        sleep: async (ms) => void delays.push(ms),
        onStatus: (s) => statuses.push(s.failing),
        baseDelay: 500,
        maxDelay: 5000,
      }
    );
    ob.enqueue({ token: "tok", trial: "t_1", choice: 1, rt_ms: 10 });
    await ob.whenEmpty();
    expect(sent).toHaveLength(6);
    expect(new Set(sent).size).toBe(1);
    expect(delays).toEqual([500, 1000, 2000, 4000, 5000]);
    expect(statuses).toEqual([true, false]);
    expect(ob.size).toBe(0);
  });

  it.each([200, 201, 409])("treats %i as confirmed", async (status) => {
    const ob = makeOutbox(memoryStorage(), async () => ({ status }));
    ob.enqueue({ token: "tok", trial: "t_1", choice: 0, rt_ms: 1 });
    await ob.whenEmpty();
    expect(ob.size).toBe(0);
    expect(ob.errors).toEqual([]);
  });

  it("drops other 4xx answers and records the error", async () => {
    const onError = vi.fn();
    const ob = makeOutbox(memoryStorage(), async (i) => (i.trial === "t_1" ? { status: 400, data: { message: "bad" } } : { status: 201 }), {
      onError,
    });
    ob.enqueue({ token: "tok", trial: "t_1", choice: 0, rt_ms: 1 });
    ob.enqueue({ token: "tok", trial: "t_2", choice: 0, rt_ms: 1 });
    await ob.whenEmpty();
    expect(ob.size).toBe(0);
    expect(ob.errors).toHaveLength(1);
    expect(ob.errors[0]).toMatchObject({ status: 400, message: "bad" });
    expect(onError).toHaveBeenCalledTimes(1);
  });

  it("never creates a second key for the same answer", async () => {
    const storage = memoryStorage();
    let release;
    const gate = new Promise((r) => (release = r));
    const sent = [];
    const ob = makeOutbox(storage, async (i) => {
      sent.push(i);
      await gate;
      return { status: 201 };
    });
    const a = ob.enqueue({ token: "tok", trial: "t_1", choice: 0, rt_ms: 1 });
    const b = ob.enqueue({ token: "tok", trial: "t_1", choice: 1, rt_ms: 2 });
    expect(b.idempotency_key).toBe(a.idempotency_key);
    expect(ob.size).toBe(1);
    release();
    await ob.whenEmpty();
    expect(sent).toHaveLength(1);
  });

  it("sends strictly in order, one at a time", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const order = [];
    const ob = makeOutbox(memoryStorage(), async (i) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      order.push(i.trial);
      inFlight--;
      return { status: 201 };
    });
    for (const t of ["a", "b", "c", "d"]) ob.enqueue({ token: "tok", trial: t, choice: 0, rt_ms: 1 });
    await ob.whenEmpty();
    expect(order).toEqual(["a", "b", "c", "d"]);
    expect(maxInFlight).toBe(1);
  });

  it("survives corrupt or unavailable storage", async () => {
    const storage = memoryStorage();
    storage.setItem(KEY, "{not json");
    const ob = makeOutbox(storage, async () => ({ status: 201 }));
    expect(ob.size).toBe(0);
    const broken = { getItem: () => { throw new Error("denied"); }, setItem: () => { throw new Error("denied"); }, removeItem: () => {} };
    const ob2 = makeOutbox(broken, async () => ({ status: 201 }));
    ob2.enqueue({ token: "tok", trial: "t_1", choice: 0, rt_ms: 1 });
    await ob2.whenEmpty();
    expect(ob2.size).toBe(0);
  });

  it("classifies statuses", () => {
    expect(classifyStatus(201)).toBe("confirmed");
    expect(classifyStatus(200)).toBe("confirmed");
    expect(classifyStatus(409)).toBe("confirmed");
    expect(classifyStatus(404)).toBe("rejected");
    expect(classifyStatus(422)).toBe("rejected");
    expect(classifyStatus(500)).toBe("retry");
    expect(classifyStatus(0)).toBe("retry");
  });
});
