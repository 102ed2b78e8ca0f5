// Image preloading with a per-file retry and a time limit per attempt.
//
// Every file is loaded (and decoded) up to `tries` times with a backoff in
// between; a file that still fails is reported back in `failed` (with the
// reason of its last attempt) instead of stopping the others. Loaded Image
// objects are kept in `cache` so the browser keeps them decoded in memory.

import { backoffDelay, sleep as realSleep } from "./retry.js";

const cache = new Map();

/** Load one image: resolves when loaded (and decoded), rejects on error / timeout. */
export function loadImageElement(url, { timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    let settled = false;
    const timer = setTimeout(() => finish(new Error("timeout")), timeoutMs);
    function finish(err) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      img.onload = img.onerror = null;
      if (err) {
        img.src = ""; // abort
        reject(err);
      } else {
        cache.set(url, img);
        resolve(img);
      }
    }
    img.onload = () => {
      if (typeof img.decode === "function") img.decode().then(() => finish(), () => finish());
      else finish();
    };
    img.onerror = () => finish(new Error("error"));
    img.decoding = "async";
    img.src = url;
  });
}

/**
 * @param {string[]} urls
 * @param {object} [o]
 * @param {number} [o.tries]       attempts per file (default 3)
 * @param {number} [o.timeoutMs]   time limit per attempt
 * @param {(done:number, total:number) => void} [o.onProgress]
 * @param {(url:string, o:{timeoutMs:number}) => Promise<any>} [o.loadImage]  injectable loader
 * @param {(ms:number) => Promise<void>} [o.sleep]
 * @returns {Promise<{loaded: string[], failed: {url:string, reason:string, tries:number}[], ms:number}>}
 */
export async function preloadImages(
  urls,
  { tries = 3, timeoutMs = 20000, onProgress = () => {}, loadImage = loadImageElement, sleep = realSleep, baseDelay = 500 } = {}
) {
  const unique = [...new Set(urls)];
  const started = Date.now();
  let done = 0;
  onProgress(0, unique.length);
  const loaded = [];
  const failed = [];
  await Promise.all(
    unique.map(async (url) => {
      let reason = "error";
      for (let attempt = 0; attempt < tries; attempt++) {
        if (attempt > 0) await sleep(backoffDelay(attempt - 1, { base: baseDelay, max: 4000 }));
        try {
          await loadImage(url, { timeoutMs });
          loaded.push(url);
          onProgress(++done, unique.length);
          return;
        } catch (err) {
          reason = (err && err.message) || "error";
        }
      }
      failed.push({ url, reason, tries });
      onProgress(++done, unique.length);
    })
  );
  return { loaded, failed, ms: Date.now() - started };
}
