// Bundle the participant app: dist/participant.js + dist/participant.css
// (the CSS includes jsPsych's stylesheet via @import).
import { build } from "esbuild";

const watch = process.argv.includes("--watch");

const options = {
  entryPoints: [
    { in: "src/main.js", out: "participant" },
    { in: "src/participant.css", out: "participant" },
  ],
  outdir: "dist",
  bundle: true,
  minify: !watch,
  sourcemap: true,
  format: "iife",
  target: ["es2020"],
  loader: { ".woff2": "dataurl", ".woff": "dataurl" },
  logLevel: "info",
};

if (watch) {
  const { context } = await import("esbuild");
  const ctx = await context(options);
  await ctx.watch();
} else {
  await build(options);
}
