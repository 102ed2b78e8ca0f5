// Quality data: the participant's screen and window, and a log of the moments
// attention may have left the task (window blur / focus, tab hidden / shown,
// fullscreen exit, resize). Events queue up in a durable list and go to the
// server with the periodic heartbeat (and on demand); only the events the
// server confirmed are dropped, so a failed heartbeat loses nothing.

/** Window and screen size, device pixel ratio and touch (the API's `client` object). */
export function environmentSnapshot(win = globalThis.window) {
  const scr = (win && win.screen) || {};
  const nav = (win && win.navigator) || {};
  return {
    window_w: Math.round((win && win.innerWidth) || 0),
    window_h: Math.round((win && win.innerHeight) || 0),
    screen_w: Math.round(scr.width || 0),
    screen_h: Math.round(scr.height || 0),
    dpr: Number((win && win.devicePixelRatio) || 1),
    touch: Number(nav.maxTouchPoints || 0) > 0,
    user_agent: String(nav.userAgent || "").slice(0, 400),
  };
}

export class QualityLog {
  /**
   * @param {object} o
   * @param {Window} [o.win]
   * @param {Document} [o.doc]
   * @param {Storage} [o.storage]  durable queue (localStorage-like); optional
   * @param {string} [o.key]
   * @param {() => number} [o.now]  ms clock (performance.now)
   * @param {() => string} [o.uuid]  event ids (a retried batch is idempotent on the server)
   */
  constructor({ win = globalThis.window, doc = globalThis.document, storage = null, key = "", now, uuid } = {}) {
    this.uuid = uuid || (() => globalThis.crypto.randomUUID());
    /** Opaque id of the trial on screen (events carry it). */
    this.trial = "";
    this.win = win;
    this.doc = doc;
    this.storage = storage;
    this.key = key;
    this.now = now || (() => (globalThis.performance ? performance.now() : Date.now()));
    this.events = this._load();
    this.counts = { blur: 0, visibility_hidden: 0, fullscreen_exit: 0 };
    this._listeners = [];
    this._wasFullscreen = false;
    this._resizeTimer = null;
  }

  _load() {
    try {
      const raw = this.storage && this.key && this.storage.getItem(this.key);
      const v = raw ? JSON.parse(raw) : [];
      return Array.isArray(v) ? v : [];
    } catch {
      return [];
    }
  }

  _save() {
    if (!this.storage || !this.key) return;
    try {
      if (this.events.length) this.storage.setItem(this.key, JSON.stringify(this.events));
      else this.storage.removeItem(this.key);
    } catch {
      /* storage full: keep in memory */
    }
  }

  /** Record one event: {id, type, t_ms (ms since the app started), trial, data}. */
  record(type, data = {}) {
    if (type in this.counts) this.counts[type]++;
    const ev = { id: this.uuid(), type, t_ms: Math.round(this.now() * 10) / 10, trial: this.trial || "", data };
    this.events.push(ev);
    if (this.events.length > 500) this.events.splice(0, this.events.length - 500);
    this._save();
    return ev;
  }

  _on(target, name, fn) {
    if (!target || typeof target.addEventListener !== "function") return;
    target.addEventListener(name, fn);
    this._listeners.push(() => target.removeEventListener(name, fn));
  }

  /** Start listening. Returns this. */
  start() {
    const { win, doc } = this;
    this._on(win, "blur", () => this.record("blur"));
    this._on(win, "focus", () => this.record("focus"));
    this._on(doc, "visibilitychange", () => this.record(doc.visibilityState === "hidden" ? "visibility_hidden" : "visibility_visible"));
    this._on(doc, "fullscreenchange", () => {
      const fs = !!doc.fullscreenElement;
      if (fs) this.record("fullscreen_enter");
      else if (this._wasFullscreen) this.record("fullscreen_exit");
      this._wasFullscreen = fs;
    });
    this._on(win, "offline", () => this.record("offline"));
    this._on(win, "online", () => this.record("online"));
    this._on(win, "resize", () => {
      clearTimeout(this._resizeTimer);
      this._resizeTimer = setTimeout(() => {
        const e = environmentSnapshot(win);
        this.record("resize", { window_w: e.window_w, window_h: e.window_h });
      }, 500);
    });
    return this;
  }

  stop() {
    clearTimeout(this._resizeTimer);
    for (const off of this._listeners.splice(0)) off();
  }

  /** Events not yet confirmed by the server (a copy). */
  pending() {
    return this.events.slice();
  }

  /** The server stored these events (by id): drop them. */
  confirm(sent) {
    const ids = new Set(sent.map((e) => e.id));
    this.events = this.events.filter((e) => !ids.has(e.id));
    this._save();
  }

  /**
   * POST the pending events (and the client snapshot when asked) with
   * `send(body)`; best effort: a failure keeps them for the next flush.
   */
  async flush(send, { client = null } = {}) {
    if (this._sending) return this._sending;
    const batch = this.pending().slice(0, 100);
    if (!batch.length && !client) return false;
    const body = { events: batch };
    if (client) body.client = client;
    this._sending = Promise.resolve()
      .then(() => send(body))
      .then(
        () => {
          this.confirm(batch);
          return true;
        },
        () => false
      )
      .finally(() => {
        this._sending = null;
      });
    return this._sending;
  }
}

/**
 * Send a heartbeat every `intervalMs` (and when `beat()` is called): the body
 * comes from `body()`; on success `onSent(body)` runs. Failures are silent
 * (the next beat carries the same events). Returns {beat, stop}.
 */
export function startHeartbeat({ send, body, onSent = () => {}, intervalMs = 15000, setTimer = setInterval, clearTimer = clearInterval }) {
  let inFlight = null;
  const beat = () => {
    if (inFlight) return inFlight;
    const b = body();
    inFlight = Promise.resolve()
      .then(() => send(b))
      .then(
        (r) => {
          onSent(b, r);
          return true;
        },
        () => false
      )
      .finally(() => {
        inFlight = null;
      });
    return inFlight;
  };
  const timer = setTimer(beat, intervalMs);
  return {
    beat,
    stop() {
      clearTimer(timer);
    },
  };
}
