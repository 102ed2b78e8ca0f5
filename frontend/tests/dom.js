// What the browser-side tests share: a fresh #jspsych-target per test, and waiting for the DOM.
import { afterEach, beforeEach } from "vitest";

/** Before each test of the file, an empty page with a #jspsych-target, handed to `onMount`; emptied after. */
export function mountTargetEachTest(onMount) {
  beforeEach(() => {
    document.body.innerHTML = "";
    const target = document.createElement("div");
    target.id = "jspsych-target";
    document.body.appendChild(target);
    onMount(target);
  });
  afterEach(() => {
    document.body.innerHTML = "";
  });
}

/** Poll `fn` every 5 ms until it returns something truthy (returned), or fail after `timeout` ms. */
export async function waitFor(fn, timeout = 2000) {
  const start = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - start > timeout) throw new Error("waitFor timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}
