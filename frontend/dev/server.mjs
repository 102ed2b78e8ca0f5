// Development server: mimics the page Django renders, serves dist/ under
// /static/, answers the participant API from the in-memory fake used by the
// tests, and generates solid-colour PNGs for /media/… image URLs (noise for masks).
//
//   npm run build && node dev/server.mjs [port]
//   open http://127.0.0.1:8765/?PROLIFIC_PID=abc&STUDY_ID=s&SESSION_ID=x
//
// Env: DEV_TRIALS (number of trials, default 6), DEV_FAIL_EVERY (make every
// Nth answer POST fail with 503, to see the "Reconnecting…" banner),
// DEV_MEDIA_FAIL=once|always (query images answer 404 the first time / always),
// DEV_MOUNT=survey-app (mount point <main id="survey-app"> like the Django template),
// DEV_TASK=cluster (clustering screens; DEV_SCREENS=n of them), DEV_PRACTICE=n (practice
// trials / cluster practice screens; every other practice answer counts as wrong),
// DEV_TASK=classification (timed categories: DEV_PRACTICE default 2, DEV_SCREENING=n screening
// trials, default 4, pass mark 75%; in each block the k-th image's right category is the k-th
// button: airplane, bear, bicycle, …; practice feedback names it; masks are grey noise).

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { createFakeServer, CONFIG } from "../tests/fake-server.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const port = Number(process.argv[2] || process.env.PORT || 8765);
const failEvery = Number(process.env.DEV_FAIL_EVERY || 0);
let responseCount = 0;
const mediaFail = process.env.DEV_MEDIA_FAIL || "";
const mediaSeen = new Set();

const taskType = process.env.DEV_TASK || "2afc";
const classify = taskType === "classification";
// Classification answers are right when they name the entry's category (the one practice feedback names).
const isRight = classify ? (b) => b.choice === api.answerOf(b.trial) : (b) => b.choice === 0;

const api = createFakeServer({
  n: Number(process.env.DEV_TRIALS || 6),
  task_type: taskType,
  screens: Number(process.env.DEV_SCREENS || 2),
  practice: Number(process.env.DEV_PRACTICE || (classify ? 2 : 0)),
  practiceCorrect: isRight,
  screening: Number(process.env.DEV_SCREENING || 4),
  screeningCorrect: isRight,
  revealAnswer: classify,
  redirect_url: process.env.DEV_REDIRECT || null,
  intercept: (req) => {
    if (failEvery && req.path.endsWith("/responses") && ++responseCount % failEvery === 0) {
      return api.json(503, { message: "temporarily unavailable" });
    }
  },
});

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image survey</title>
<link rel="stylesheet" href="/static/participant.css">
</head><body>
${process.env.DEV_MOUNT === "survey-app" ? '<main id="survey-app"></main>' : '<div id="jspsych-target"></div>'}
<script id="survey-config" type="application/json">${JSON.stringify({ ...CONFIG, task_type: taskType })}</script>
<script src="/static/participant.js"></script>
</body></html>`;

// --- tiny PNG encoder -------------------------------------------------------
const CRC = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function png(seed, { noise = false, w = 320, h = 320 } = {}) {
  const [r, g, b] = [0, 8, 16].map((s) => 60 + ((seed >>> s) & 0xff) % 180);
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      if (noise) {
        // A classification mask: grey 8×8 blocks of hashed noise, the query's size.
        raw[o] = raw[o + 1] = raw[o + 2] = Math.imul(seed ^ Math.imul(x >> 3, 73856093) ^ Math.imul(y >> 3, 19349663), 2654435761) >>> 24;
        continue;
      }
      const stripe = ((x + y) >> 5) & 1 ? 30 : 0;
      raw[o] = r - stripe;
      raw[o + 1] = g - stripe;
      raw[o + 2] = b - stripe;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
const hashStr = (s) => [...s].reduce((h, c) => (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0, 7);

// --- server -----------------------------------------------------------------
const TYPES = { ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

http
  .createServer(async (req, res) => {
    const url = new URL(req.url, `http://${req.headers.host}`);
    try {
      if (url.pathname === "/") {
        res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
        return res.end(PAGE);
      }
      if (url.pathname.startsWith("/static/")) {
        const file = path.join(root, "dist", path.basename(url.pathname));
        if (!fs.existsSync(file)) {
          res.writeHead(404);
          return res.end("not found (run npm run build)");
        }
        res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
        return res.end(fs.readFileSync(file));
      }
      if (url.pathname.startsWith("/media/img/ab/") && mediaFail) {
        const first = !mediaSeen.has(url.pathname);
        mediaSeen.add(url.pathname);
        if (mediaFail === "always" || first) {
          res.writeHead(404, { "Cache-Control": "no-store" });
          return res.end("missing");
        }
      }
      if (url.pathname.startsWith("/media/")) {
        res.writeHead(200, { "Content-Type": "image/png", "Cache-Control": "max-age=3600" });
        return res.end(png(hashStr(url.pathname), { noise: url.pathname.startsWith("/media/img/mk/") }));
      }
      if (url.pathname.startsWith("/api/")) {
        let body = "";
        for await (const c of req) body += c;
        const r = await api.fetch(url.pathname, { method: req.method, body: body || undefined });
        res.writeHead(r.status, { "Content-Type": "application/json" });
        return res.end(await r.text());
      }
      res.writeHead(404);
      res.end("not found");
    } catch (err) {
      res.writeHead(500, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ message: String(err) }));
    }
  })
  .listen(port, "127.0.0.1", () => console.log(`dev server on http://127.0.0.1:${port}/`));
