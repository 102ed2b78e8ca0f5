import { beforeEach, describe, expect, it } from "vitest";
import { DEBRIEFS, createConnectionBanner, renderCompletion, safeUrl } from "../src/ui.js";
import { ensureStylesheet, findTarget, readConfig, readParams } from "../src/main.js";

beforeEach(() => {
  document.head.innerHTML = "";
  document.body.innerHTML = "";
});

describe("ui", () => {
  it("banner shows while any source fails", () => {
    const banner = createConnectionBanner(document);
    const a = banner.source("a");
    const b = banner.source("b");
    expect(banner.element.getAttribute("role")).toBe("status");
    a(true);
    b(true);
    expect(banner.element.textContent).toBe("Reconnecting…");
    a(false);
    expect(banner.element.textContent).toBe("Reconnecting…");
    b(false);
    expect(banner.element.textContent).toBe("");
  });

  it("completion screen without redirect shows only the code", () => {
    const el = document.createElement("div");
    document.body.appendChild(el);
    renderCompletion(el, { completion_code: "<b>X1</b>", redirect_url: null });
    expect(el.querySelector("#completion-code").textContent).toBe("<b>X1</b>");
    expect(el.querySelector("#completion-code-label").textContent).toBe("Your completion code:");
    expect(el.querySelector("#completion-redirect")).toBeNull();
  });

  it("the end screen's debrief speaks of the task the participant did", () => {
    const el = document.createElement("div");
    const debrief = (task_type) => {
      renderCompletion(el, { completion_code: "C1", task_type });
      return el.querySelector("#debrief").textContent;
    };
    expect(debrief("2afc")).toMatch(/choices .* alike/);
    expect(debrief("cluster")).toMatch(/reference photos.*matches/);
    expect(debrief("classification")).toMatch(/category/);
    expect(debrief("classification")).not.toMatch(/alike|choose between two|reference/);
    expect(debrief("cluster")).not.toMatch(/alike|category/);
    expect(debrief(null)).toBe(debrief("2afc")); // an older page without a task type
    expect(Object.keys(DEBRIEFS).sort()).toEqual(["2afc", "classification", "cluster"]);
    renderCompletion(el, { completion_code: "C1", task_type: "cluster", debrief_html: "<p>Ours</p>" });
    expect(el.querySelector("#debrief").textContent).toBe("Ours"); // the server's own text wins
  });

  it("only follows http(s) redirect URLs", () => {
    expect(safeUrl("javascript:alert(1)")).toBeNull();
    expect(safeUrl("https://app.prolific.com/submissions/complete?cc=ABC")).toBe(
      "https://app.prolific.com/submissions/complete?cc=ABC"
    );
    expect(safeUrl("/thanks", "https://example.org/s/")).toBe("https://example.org/thanks");
  });
});

describe("page wiring", () => {
  it("reads config and query params", () => {
    document.body.innerHTML =
      '<script id="survey-config" type="application/json">{"slug": "demo", "enroll_url": "/e", "session_base": "/s/"}</script>';
    expect(readConfig(document)).toEqual({ slug: "demo", enroll_url: "/e", session_base: "/s/" });
    expect(readParams("?PROLIFIC_PID=p&STUDY_ID=s")).toMatchObject({ prolific_pid: "p", study_id: "s", session_id: "" });
  });

  it("adds participant.css next to the script when the page has no link to it", () => {
    ensureStylesheet(document, "https://x.org/static/participant.js");
    const links = document.querySelectorAll('link[rel="stylesheet"]');
    expect([...links].map((l) => l.getAttribute("href"))).toEqual(["https://x.org/static/participant.css"]);
    ensureStylesheet(document, "https://x.org/static/participant.js");
    expect(document.querySelectorAll('link[rel="stylesheet"]')).toHaveLength(1);
  });

  it("finds the mount point: #jspsych-target, else #survey-app, else a new div", () => {
    document.body.innerHTML = '<main id="survey-app"></main>';
    expect(findTarget(document).id).toBe("survey-app");
    document.body.innerHTML = '<div id="jspsych-target"></div><main id="survey-app"></main>';
    expect(findTarget(document).id).toBe("jspsych-target");
    document.body.innerHTML = "";
    expect(findTarget(document).parentNode).toBe(document.body);
  });
});
