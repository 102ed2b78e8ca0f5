// The keyboard of a grid of category buttons (a roving tabindex: one button in the Tab order at a time).
// The arrow keys move focus across the grid (Up/Down by the columns as laid out; past an edge, focus stays
// put), Home / End go to the first / last, a letter or digit moves to the next category starting with it,
// Enter or Space chooses the focused category.

/** Grid columns assumed for Up/Down when the page has no layout (e.g. jsdom). */
const FALLBACK_COLUMNS = 4;

/** Columns of the button grid as laid out (buttons sharing the first one's top); a fallback without layout. */
function gridColumns(buttons) {
  const rects = buttons.map((b) => b.getBoundingClientRect());
  if (!rects.length || rects.every((r) => r.height === 0)) return Math.min(FALLBACK_COLUMNS, buttons.length);
  const top = rects[0].top;
  return Math.max(1, rects.filter((r) => Math.abs(r.top - top) < 2).length);
}

/** Index of the next label after `from` (wrapping) that starts with `key`; null if none. */
function nextStartingWith(labels, from, key) {
  const k = key.toLowerCase();
  for (let j = 1; j <= labels.length; j++) {
    const i = (from + j) % labels.length;
    if (labels[i].trim().toLowerCase().startsWith(k)) return i;
  }
  return null;
}

/**
 * Wire the roving focus of `buttons` (labelled `labels`) and return the keydown handler that moves it
 * and calls choose(index) on Enter / Space.
 */
export function choiceGridKeys(buttons, labels, choose) {
  let current = 0;
  const focusAt = (i) => {
    current = Math.max(0, Math.min(buttons.length - 1, i));
    buttons.forEach((b, k) => (b.tabIndex = k === current ? 0 : -1));
    buttons[current].focus();
  };
  // Whichever button gets focus (Tab, a click) becomes the roving one.
  buttons.forEach((b, k) =>
    b.addEventListener("focus", () => {
      current = k;
      buttons.forEach((x, j) => (x.tabIndex = j === k ? 0 : -1));
    })
  );

  return (e) => {
    const at = buttons.includes(document.activeElement) ? buttons.indexOf(document.activeElement) : null;
    const key = e.key;
    let to = null;
    if (key === "ArrowRight") to = at === null ? current : at + 1;
    else if (key === "ArrowLeft") to = at === null ? current : at - 1;
    else if (key === "ArrowDown") to = at === null ? current : at + gridColumns(buttons);
    else if (key === "ArrowUp") to = at === null ? current : at - gridColumns(buttons);
    else if (key === "Home") to = 0;
    else if (key === "End") to = buttons.length - 1;
    else if (key === "Enter" || key === " " || key === "Spacebar") {
      if (at === null || e.repeat) return;
      e.preventDefault();
      choose(at);
      return;
    } else if (key.length === 1 && /\p{L}|\p{N}/u.test(key)) {
      to = nextStartingWith(labels, at === null ? -1 : at, key);
      if (to === null) return;
    } else return;
    e.preventDefault();
    // Up/Down past the grid's edge stay put rather than jump to the other end.
    if (to < 0 || to >= buttons.length) to = at;
    focusAt(to);
  };
}
