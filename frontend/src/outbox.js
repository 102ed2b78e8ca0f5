// Durable, ordered queue of answers waiting to be confirmed by the server.
//
// - Each answer gets its idempotency key when it is enqueued; the key is
//   stored with the item, so every retry (also after a page reload) re-sends
//   the very same key. One answer never gets two keys.
// - Items are POSTed strictly in order. The head item is retried with
//   exponential backoff (capped) while the server doesn't confirm it.
// - 200/201 (saved / already saved with this key) and 409 (trial already
//   answered) confirm an item; any other 4xx drops it and records an error;
//   5xx and network errors keep it and retry.

import { backoffDelay, sleep as realSleep } from "./retry.js";

function defaultUuid() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === "function") {
    return globalThis.crypto.randomUUID();
  }
  // Fallback for old browsers / non-secure contexts: RFC 4122 v4 from getRandomValues.
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** How the outbox reacts to an HTTP status for a POSTed answer. */
export function classifyStatus(status) {
  if (status === 200 || status === 201 || status === 409) return "confirmed";
  if (status >= 400 && status < 500) return "rejected";
  if (status >= 200 && status < 300) return "confirmed";
  return "retry"; // 5xx, 0, anything odd
}

export class Outbox {
  /**
   * @param {object} opts
   * @param {Storage} opts.storage   localStorage-like (getItem/setItem)
   * @param {string} opts.key        storage key, e.g. "iri-survey:<slug>:outbox"
   * @param {(item) => Promise<{status:number}>} opts.send  POSTs one item; rejects on network error
   * @param {(s:{failing:boolean, pending:number}) => void} [opts.onStatus]
   * @param {(e:{item, status, message}) => void} [opts.onError]  an item was rejected (4xx) and dropped
   * @param {(e:{item, data}) => void} [opts.onConflict]  the server answered 409 (final: dropped, e.g. session ended)
   * @param {(ms:number) => Promise<void>} [opts.sleep]
   * @param {() => string} [opts.uuid]
   */
  constructor({ storage, key, send, onStatus, onError, onConflict, sleep, uuid, baseDelay = 500, maxDelay = 5000 }) {
    this.storage = storage;
    this.key = key;
    this.send = send;
    this.onStatus = onStatus || (() => {});
    this.onError = onError || (() => {});
    this.onConflict = onConflict || (() => {});
    this.sleep = sleep || realSleep;
    this.uuid = uuid || defaultUuid;
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.errors = [];
    this.failing = false;
    this._flushing = null;
    this.items = this._load();
    this.left = []; // items that left the queue (confirmed or rejected) since the page loaded
  }

  _load() {
    try {
      const raw = this.storage && this.storage.getItem(this.key);
      const items = raw ? JSON.parse(raw) : [];
      return Array.isArray(items) ? items.filter((i) => i && i.idempotency_key && i.trial) : [];
    } catch {
      return [];
    }
  }

  _save() {
    try {
      if (this.items.length) this.storage.setItem(this.key, JSON.stringify(this.items));
      else this.storage.removeItem(this.key);
    } catch {
      // Storage full or unavailable: keep working from memory.
    }
  }

  get size() {
    return this.items.length;
  }

  /**
   * Trial ids this page holds answers for (optionally for one session token): still waiting to be confirmed, or
   * sent since the page loaded. The server's list of answered trials may have been read before a leftover answer
   * of an earlier visit got through, so a trial must not count as open just because it left the queue meanwhile.
   */
  pendingTrials(token) {
    return [...this.left, ...this.items].filter((i) => token === undefined || i.token === token).map((i) => i.trial);
  }

  /**
   * Store an answer durably and start sending it. If the same trial of the
   * same session is already queued, the existing item (and key) is kept.
   */
  enqueue({ token, trial, choice, rt_ms, timing }) {
    let item = this.items.find((i) => i.token === token && i.trial === trial);
    if (!item) {
      item = { token, trial, choice, rt_ms, idempotency_key: this.uuid() };
      if (timing != null) item.timing = timing;
      this.items.push(item);
      this._save();
    }
    this.flush();
    return item;
  }

  /** Send everything queued; resolves once the queue is empty. */
  flush() {
    if (!this._flushing) {
      this._flushing = this._run().finally(() => {
        this._flushing = null;
      });
    }
    return this._flushing;
  }

  /** Resolves when every queued item has been confirmed (or rejected). */
  whenEmpty() {
    return this.items.length ? this.flush() : Promise.resolve();
  }

  _setFailing(failing) {
    if (this.failing !== failing) {
      this.failing = failing;
      this.onStatus({ failing, pending: this.items.length });
    }
  }

  _remove(item) {
    this.left.push(item);
    this.items = this.items.filter((i) => i.idempotency_key !== item.idempotency_key);
    this._save();
  }

  async _run() {
    let attempt = 0;
    while (this.items.length) {
      const item = this.items[0];
      let status = 0;
      let data = null;
      try {
        ({ status, data } = await this.send(item));
      } catch {
        status = 0;
      }
      const outcome = classifyStatus(status);
      if (outcome === "retry") {
        this._setFailing(true);
        await this.sleep(backoffDelay(attempt, { base: this.baseDelay, max: this.maxDelay }));
        attempt++;
        continue;
      }
      attempt = 0;
      this._remove(item);
      if (status === 409) {
        try {
          this.onConflict({ item, data });
        } catch {
          /* a broken hook must not stop the queue */
        }
      }
      if (outcome === "rejected") {
        const error = { item, status, message: (data && data.message) || `HTTP ${status}`, data };
        this.errors.push(error);
        try {
          this.onError(error);
        } catch {
          /* a broken hook must not stop the queue */
        }
      }
      this._setFailing(false);
    }
  }
}
