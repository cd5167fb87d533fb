// Reading workstation: mounts the blinded viewer, loads each image set in one request
// (multipart/related), autosaves every answer, restores saved answers (ROIs redrawn), drives
// the form from the keyboard, and moves to the next case in place (the next case's images
// are fetched while the reader answers). Plain ES module.
import ReconViewer from "../viewer/viewer.js";

const panel = document.getElementById("rw-panel");
const CHOICE_KINDS = new Set(["likert", "finding", "choice", "preference"]);

let config;
let form;
let questions = [];
let byKey = {};
let roiValues = {};        // question key -> saved ROI answer (dict) or null
let lastArea = null;       // last ellipse/rectangle measurement from the viewer
let lastLength = null;     // last length measurement
let current = null;        // the question the keyboard answers
let pending = Promise.resolve();
let saveCount = 0;
let viewer = null;
let imagesShown = Promise.resolve();  // settles once the case's viewer is mounted
let reported = new Set();  // image failures already logged for this case
const seriesRequests = new Map();  // series URL -> Promise<{buffer, contentType}>

// ------------------------------------------------------------------ small helpers

const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  const line = $("save-status");
  if (!line) return;
  line.textContent = text;
  line.classList.toggle("error", isError);
}

function fmt(x, digits = 1) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function csrf() {
  return form.querySelector("input[name=csrfmiddlewaretoken]").value;
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch { /* 204 or a non-JSON error page */ }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

// ------------------------------------------------------------------ answers

function showRoi(key) {
  const out = byKey[key].querySelector(".roi-stats");
  const v = roiValues[key];
  out.textContent = v
    ? `${v.shape}: mean ${fmt(v.mean)}, SD ${fmt(v.sd)}, area ${fmt(v.area_mm2)} mm²`
    : "No ROI yet: draw one (E ellipse, B box).";
  byKey[key].classList.toggle("answered", Boolean(v));
  updateProgress();
}

function roiAnswer(m) {
  return {
    shape: m.type, mean: m.mean, sd: m.sd, area_mm2: m.area_mm2, pixel_count: m.pixel_count,
    uid: m.uid, viewport: m.viewport, slice_index: m.slice_index, points: m.points,
  };
}

// The answer of one question from the form, or undefined while incomplete.
function answerOf(fieldset, quiet = false) {
  const key = fieldset.dataset.key;
  const kind = fieldset.dataset.kind;
  const field = fieldset.querySelector(`[name="v-${key}"]:checked`) ||
    fieldset.querySelector(`input[type=number][name="v-${key}"], textarea[name="v-${key}"]`);
  if (kind === "roi") return { question: key, value: roiValues[key] ?? null };
  if (kind === "number") {
    const raw = field.value.trim();
    return { question: key, value: raw === "" ? null : Number(raw) };
  }
  if (kind === "text") return { question: key, value: field.value.trim() === "" ? null : field.value };
  if (!field) return undefined;
  const value = kind === "likert" ? Number(field.value) : field.value;
  if (fieldset.dataset.confidence) {
    const conf = fieldset.querySelector(`[name="c-${key}"]:checked`);
    if (!conf) {
      if (!quiet) {
        const label = fieldset.querySelector("legend").firstChild.textContent.trim();
        setStatus(`Choose your confidence for “${label}” (Shift + 1–5).`);
      }
      return undefined;
    }
    return { question: key, value, confidence: Number(conf.value) };
  }
  return { question: key, value };
}

function isComplete(fieldset) {
  const answer = answerOf(fieldset, true);
  return Boolean(answer && answer.value !== null);
}

function save(answers) {
  if (!config.editable || answers.length === 0) return pending;
  const mine = ++saveCount;
  const url = config.answersUrl;
  setStatus("Saving…");
  pending = pending.then(() => post(url, { answers })).then(
    () => { if (mine === saveCount) setStatus("All answers saved."); },
    (err) => setStatus(`Not saved: ${err.message}`, true),
  );
  return pending;
}

function saveFieldset(fieldset) {
  const answer = answerOf(fieldset);
  fieldset.classList.toggle("answered", Boolean(answer && answer.value !== null));
  updateProgress();
  if (answer) save([answer]);
}

function updateProgress() {
  const required = questions.filter((q) => q.dataset.required);
  const answered = questions.filter((q) => q.classList.contains("answered"));
  const missing = required.filter((q) => !q.classList.contains("answered")).length;
  const counter = $("answered-count");
  if (counter) {
    counter.textContent = `${answered.length} of ${questions.length} answered` +
      (missing ? `, ${missing} required left` : "");
  }
  for (const section of form.querySelectorAll("details.rw-section")) {
    const inside = [...section.querySelectorAll("fieldset.question")];
    const done = inside.filter((q) => q.classList.contains("answered")).length;
    section.querySelector(".rw-section-count").textContent = `${done}/${inside.length}`;
    section.classList.toggle("rw-complete", done === inside.length);
  }
}

function fill(answers) {
  for (const a of answers) {
    const fieldset = byKey[a.question];
    if (!fieldset || a.value === null) continue;
    const kind = fieldset.dataset.kind;
    if (kind === "roi") { roiValues[a.question] = a.value; showRoi(a.question); continue; }
    if (kind === "number" || kind === "text") {
      fieldset.querySelector(`[name="v-${a.question}"]`).value = a.value;
    } else {
      for (const input of fieldset.querySelectorAll(`[name="v-${a.question}"]`)) {
        input.checked = input.value === String(a.value);
      }
    }
    if (a.confidence !== null && a.confidence !== undefined) {
      for (const input of fieldset.querySelectorAll(`[name="c-${a.question}"]`)) {
        input.checked = input.value === String(a.confidence);
      }
    }
    fieldset.classList.add("answered");
  }
  updateProgress();
}

async function restore() {
  const response = await fetch(config.answersUrl, { credentials: "same-origin" });
  if (!response.ok) { setStatus("Could not load your saved answers.", true); return; }
  const data = await response.json();
  fill(data.answers);
  if (!data.editable) {
    for (const el of form.querySelectorAll("input, textarea, button")) el.disabled = true;
  }
  await imagesShown.catch(() => undefined);
  if (viewer) await viewer.ready.catch(() => undefined);
  const rois = data.answers.filter((a) => byKey[a.question]?.dataset.kind === "roi" &&
    a.value && Array.isArray(a.value.points) && a.value.points.length);
  if (rois.length && viewer) {
    const drawn = await viewer.loadMeasurements(rois.map((a) => ({
      uid: a.value.uid, type: a.value.shape, viewport: a.value.viewport ?? 0,
      slice_index: a.value.slice_index ?? 0, points: a.value.points,
    })));
    drawn.forEach((m, i) => {
      if (m && m.uid) roiValues[rois[i].question] = { ...roiValues[rois[i].question], uid: m.uid };
    });
  }
  setStatus(data.answers.length ? "Saved answers restored." : "");
  document.body.dataset.readingReady = "1";
}

// ------------------------------------------------------------------ keyboard

function setCurrent(fieldset) {
  if (current === fieldset) return;
  current?.classList.remove("rw-current");
  current = fieldset;
  current?.classList.add("rw-current");
}

function focusQuestion(fieldset) {
  setCurrent(fieldset);
  const details = fieldset.closest("details");
  if (details && !details.open) details.open = true;
  const target = fieldset.querySelector("input:checked") ||
    fieldset.querySelector("input, textarea, button");
  target?.focus({ preventScroll: true });
  fieldset.scrollIntoView({ block: "nearest" });
}

function moveQuestion(step) {
  if (!questions.length) return;
  const index = current ? questions.indexOf(current) : -1;
  const next = questions[Math.min(questions.length - 1, Math.max(0, index + step))];
  focusQuestion(next);
}

// Number key n answers the current question with its n-th option (Shift: confidence n).
function answerByNumber(fieldset, n, confidence) {
  if (!CHOICE_KINDS.has(fieldset.dataset.kind)) return false;
  const key = fieldset.dataset.key;
  const name = confidence && fieldset.dataset.confidence ? `c-${key}` : `v-${key}`;
  const input = fieldset.querySelectorAll(`input[name="${name}"]`)[n - 1];
  if (!input || input.disabled) return false;
  input.checked = true;
  input.focus({ preventScroll: true });
  saveFieldset(fieldset);
  if (isComplete(fieldset)) moveQuestion(1);
  return true;
}

// Capture phase on the document, before the viewer's own shortcuts (which listen on the
// document too, so they work whatever has the focus, except in text fields).
function onPageKey(e) {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    e.stopPropagation();
    submitRead();
    return;
  }
  if (e.altKey || e.metaKey || e.ctrlKey) return;
  const target = e.target;
  if (ReconViewer.isTextEntry(target)) {
    if (e.key === "Enter" && target.tagName === "INPUT") {
      e.preventDefault();
      moveQuestion(1);
    }
    return;
  }
  const inViewer = Boolean(target.closest?.("#viewer"));
  if (!inViewer && (e.key === "v" || e.key === "V")) {
    e.preventDefault();
    e.stopPropagation();
    $("viewer").focus({ preventScroll: true });
    return;
  }
  if (inViewer || !current || !panel.contains(current)) return;
  const digit = /^(?:Digit|Numpad)([1-9])$/.exec(e.code);
  if (digit) {
    if (answerByNumber(current, Number(digit[1]), e.shiftKey)) {
      e.preventDefault();
      e.stopPropagation();
    }
    return;
  }
  const onControl = ["BUTTON", "A", "SUMMARY"].includes(target.tagName);
  if (e.key === "Tab" || (e.key === "Enter" && !onControl)) {
    e.preventDefault();
    e.stopPropagation();
    moveQuestion(e.shiftKey ? -1 : 1);
  }
}

// ------------------------------------------------------------------ images

function seriesOf(url) {
  if (!seriesRequests.has(url)) {
    const request = ReconViewer.fetchSeries(url);
    request.catch(() => seriesRequests.delete(url));
    seriesRequests.set(url, request);
  }
  return seriesRequests.get(url);
}

function stacksOf(cfg) {
  return [cfg.imageIds, cfg.secondImageIds].filter((ids) => ids.length);
}

function reportImageError(message, viewport, slice) {
  const key = `${viewport}:${slice}:${message}`;
  if (reported.has(key) || !config.imageErrorUrl) return;
  reported.add(key);
  post(config.imageErrorUrl, { message: String(message).slice(0, 500), viewport, slice_index: slice })
    .catch(() => undefined);
}

function showProblem(text) {
  const box = $("viewer-problem");
  box.querySelector(".rw-problem-text").textContent = text;
  box.hidden = false;
}

// Each image set in one request; when that fails the viewer loads slice by slice.
async function preloadImages(cfg) {
  const stacks = stacksOf(cfg);
  await Promise.all(cfg.series.map(async (url, i) => {
    if (!url || !stacks[i]) return;
    try {
      await ReconViewer.registerSeries(stacks[i], await seriesOf(url));
    } catch (err) {
      reportImageError(`whole-series request failed (${err.message}); loading slice by slice`, i, null);
    } finally {
      seriesRequests.delete(url);
    }
  }));
}

function prefetchNext() {
  for (const url of config.prefetchSeries) seriesOf(url);
}

function presetsOf(cfg) {
  return [{ name: "Auto (from image)", kind: "auto" }, ...cfg.presets];
}

function mountViewer() {
  const stacks = stacksOf(config);
  viewer = ReconViewer.mount($("viewer"), {
    imageIds: stacks[0],
    layout: stacks.length > 1 ? "side-by-side" : "single",
    secondImageIds: stacks.length > 1 ? stacks[1] : undefined,
    initialSliceIndex: "middle",
    presets: presetsOf(config),
    keyboardTarget: document,
    onMeasurement: (m) => {
      if (m.type === "length") lastLength = m; else lastArea = m;
      // A saved ROI edited on the image (handles dragged) updates its answer.
      for (const [key, v] of Object.entries(roiValues)) {
        if (v && v.uid === m.uid && m.type !== "length") {
          roiValues[key] = roiAnswer(m);
          showRoi(key);
          save([{ question: key, value: roiValues[key] }]);
        }
      }
    },
    onMeasurementRemoved: (uid) => {
      for (const [key, v] of Object.entries(roiValues)) {
        if (v && v.uid === uid) {
          roiValues[key] = null;
          showRoi(key);
          save([{ question: key, value: null }]);
        }
      }
      if (lastArea?.uid === uid) lastArea = null;
    },
    onError: (e) => {
      const where = e.slice_index === null || e.slice_index === undefined ? "" : ` (image ${e.slice_index + 1})`;
      showProblem(`An image failed to load${where}.`);
      reportImageError(e.message, e.viewport, e.slice_index);
    },
  });
  window.readingViewer = viewer;
}

async function showImages(previous) {
  const stacks = stacksOf(config);
  $("viewer-problem").hidden = true;
  if (!stacks.length) {
    viewer?.destroy();
    viewer = null;
    return;
  }
  await preloadImages(config);
  const sameLayout = viewer && previous && stacksOf(previous).length === stacks.length;
  if (sameLayout) {
    viewer.setPresets(presetsOf(config));
    viewer.loadStack(stacks[0], stacks[1], { initialSliceIndex: "middle" });
  } else {
    viewer?.destroy();
    mountViewer();
  }
  if (previous) ReconViewer.releaseSeries(stacksOf(previous).flat());
  viewer.ready.then(() => {
    document.body.dataset.viewerReady = "1";
    prefetchNext();
  }).catch(() => showProblem("The images failed to load."));
}

$("viewer-retry").addEventListener("click", () => {
  $("viewer-problem").hidden = true;
  viewer?.retry().catch(() => showProblem("The images still fail to load; try again or tell the study coordinator."));
});

// ------------------------------------------------------------------ cases

function bindCase() {
  config = JSON.parse($("reading-config").textContent);
  form = $("read-form");
  questions = [...form.querySelectorAll("fieldset.question")];
  byKey = Object.fromEntries(questions.map((q) => [q.dataset.key, q]));
  roiValues = {};
  lastArea = null;
  lastLength = null;
  current = null;
  reported = new Set();
  updateProgress();
}

async function submitRead() {
  const button = $("submit-read");
  if (!button || button.disabled) return;
  button.disabled = true;
  $("submit-error").hidden = true;
  let data;
  try {
    await pending;
    data = await post(config.submitUrl);
  } catch (err) {
    $("submit-error").textContent = err.message;
    $("submit-error").hidden = false;
    button.disabled = false;
    return;
  }
  if (data.finished) window.location.assign(data.next_url);
  else await goTo(data.next_url, true);
}

// The next case in place: its page is fetched, the question panel swapped, and the viewer
// shows the images fetched while the reader answered. Any surprise: a plain page load.
async function goTo(url, push) {
  document.body.dataset.viewerReady = "0";
  document.body.dataset.readingReady = "0";
  let doc;
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok || response.redirected) throw new Error(String(response.status));
    doc = new DOMParser().parseFromString(await response.text(), "text/html");
  } catch {
    window.location.assign(url);
    return;
  }
  const nextPanel = doc.getElementById("rw-panel");
  const nextConfig = doc.getElementById("reading-config");
  if (!nextPanel || !nextConfig) { window.location.assign(url); return; }
  const previous = config;
  if (push) history.pushState({}, "", url);
  document.title = doc.title;
  panel.replaceChildren(...[...nextPanel.childNodes].map((node) => document.importNode(node, true)));
  $("reading-config").textContent = nextConfig.textContent;
  $("images-missing")?.remove();
  const missing = doc.getElementById("images-missing");
  if (missing) $("viewer-problem").before(document.importNode(missing, true));
  bindCase();
  imagesShown = showImages(previous);
  restore().catch((err) => setStatus(`Could not restore answers: ${err.message}`, true));
  await imagesShown.catch((err) => showProblem(`The images failed to load: ${err.message}`));
}

// Delegated on the panel, which stays while its content changes from case to case.
panel.addEventListener("change", (e) => {
  const fieldset = e.target.closest("fieldset.question");
  if (fieldset) { setCurrent(fieldset); saveFieldset(fieldset); }
});
let textTimer = null;
panel.addEventListener("input", (e) => {
  const fieldset = e.target.closest("fieldset.question");
  if (!fieldset || fieldset.dataset.kind !== "text") return;
  clearTimeout(textTimer);
  textTimer = setTimeout(() => saveFieldset(fieldset), 800);
});
panel.addEventListener("focusin", (e) => {
  const fieldset = e.target.closest("fieldset.question");
  if (fieldset) setCurrent(fieldset);
});
panel.addEventListener("submit", (e) => {
  if (e.target.id === "read-form") e.preventDefault();
});
panel.addEventListener("click", (e) => {
  const fieldset = e.target.closest("fieldset.question");
  if (fieldset) setCurrent(fieldset);
  const button = e.target.closest("button");
  if (!button) return;
  if (button.id === "submit-read") { submitRead(); return; }
  if (!fieldset) return;
  const key = fieldset.dataset.key;
  if (button.classList.contains("use-roi")) {
    if (!lastArea) { setStatus("Draw an ellipse (E) or rectangle (B) ROI first.", true); return; }
    roiValues[key] = roiAnswer(lastArea);
    showRoi(key);
    save([{ question: key, value: roiValues[key] }]);
  } else if (button.classList.contains("clear-roi")) {
    roiValues[key] = null;
    showRoi(key);
    save([{ question: key, value: null }]);
  } else if (button.classList.contains("use-length")) {
    if (!lastLength) { setStatus("Draw a length measurement (L) first.", true); return; }
    fieldset.querySelector("input[type=number]").value = fmt(lastLength.length_mm, 2);
    saveFieldset(fieldset);
  }
});
window.addEventListener("popstate", () => window.location.reload());
document.addEventListener("keydown", onPageKey, true);

bindCase();
imagesShown = showImages(null);
imagesShown.catch((err) => showProblem(`The images failed to load: ${err.message}`));
restore().catch((err) => setStatus(`Could not restore answers: ${err.message}`, true));
