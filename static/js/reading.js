// Reading page: mounts the blinded viewer, autosaves every answer, restores saved answers
// (ROIs redrawn) after a reload, submits and moves to the next case. Plain ES module.
import ReconViewer from "../viewer/viewer.js";

const config = JSON.parse(document.getElementById("reading-config").textContent);
const form = document.getElementById("read-form");
const statusLine = document.getElementById("save-status");
const submitError = document.getElementById("submit-error");
const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
const questions = [...form.querySelectorAll("fieldset.question")];
const byKey = Object.fromEntries(questions.map((q) => [q.dataset.key, q]));
const roiValues = {};      // question key -> saved ROI answer (dict) or null
let lastArea = null;       // last ellipse/rectangle measurement from the viewer
let lastLength = null;     // last length measurement
let pending = Promise.resolve();
let saveCount = 0;

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function fmt(x, digits = 1) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function showRoi(key) {
  const out = byKey[key].querySelector(".roi-stats");
  const v = roiValues[key];
  out.textContent = v
    ? `${v.shape}: mean ${fmt(v.mean)}, SD ${fmt(v.sd)}, area ${fmt(v.area_mm2)} mm²`
    : "No ROI yet: draw one (E ellipse, B box).";
  byKey[key].classList.toggle("answered", Boolean(v));
}

function roiAnswer(m) {
  return {
    shape: m.type, mean: m.mean, sd: m.sd, area_mm2: m.area_mm2, pixel_count: m.pixel_count,
    uid: m.uid, viewport: m.viewport, slice_index: m.slice_index, points: m.points,
  };
}

// The answer of one question from the form, or undefined while incomplete.
function answerOf(fieldset) {
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
      setStatus(`Choose your confidence for “${fieldset.querySelector("legend").firstChild.textContent.trim()}”.`);
      return undefined;
    }
    return { question: key, value, confidence: Number(conf.value) };
  }
  return { question: key, value };
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch { /* non-JSON error page */ }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function save(answers) {
  if (!config.editable || answers.length === 0) return pending;
  const mine = ++saveCount;
  setStatus("Saving…");
  pending = pending.then(() => post(config.answersUrl, { answers })).then(
    () => { if (mine === saveCount) setStatus("All answers saved."); },
    (err) => setStatus(`Not saved: ${err.message}`, true),
  );
  return pending;
}

function saveFieldset(fieldset) {
  const answer = answerOf(fieldset);
  fieldset.classList.toggle("answered", Boolean(answer && answer.value !== null));
  if (answer) save([answer]);
}

let textTimer = null;
form.addEventListener("change", (e) => {
  const fieldset = e.target.closest("fieldset.question");
  if (fieldset) saveFieldset(fieldset);
});
form.addEventListener("input", (e) => {
  const fieldset = e.target.closest("fieldset.question");
  if (!fieldset || fieldset.dataset.kind !== "text") return;
  clearTimeout(textTimer);
  textTimer = setTimeout(() => saveFieldset(fieldset), 800);
});
form.addEventListener("submit", (e) => e.preventDefault());

for (const fieldset of questions) {
  const key = fieldset.dataset.key;
  fieldset.querySelector(".use-roi")?.addEventListener("click", () => {
    if (!lastArea) { setStatus("Draw an ellipse (E) or rectangle (B) ROI first.", true); return; }
    roiValues[key] = roiAnswer(lastArea);
    showRoi(key);
    save([{ question: key, value: roiValues[key] }]);
  });
  fieldset.querySelector(".clear-roi")?.addEventListener("click", () => {
    roiValues[key] = null;
    showRoi(key);
    save([{ question: key, value: null }]);
  });
  fieldset.querySelector(".use-length")?.addEventListener("click", () => {
    if (!lastLength) { setStatus("Draw a length measurement (L) first.", true); return; }
    fieldset.querySelector("input[type=number]").value = fmt(lastLength.length_mm, 2);
    saveFieldset(fieldset);
  });
}

const viewer = ReconViewer.mount(document.getElementById("viewer"), {
  imageIds: config.imageIds,
  layout: config.secondImageIds.length ? "side-by-side" : "single",
  secondImageIds: config.secondImageIds.length ? config.secondImageIds : undefined,
  initialSliceIndex: "middle",
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
    const p = document.getElementById("viewer-problem");
    p.textContent = `An image failed to load: ${e.message}`;
    p.hidden = false;
  },
});
window.readingViewer = viewer;

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
}

async function restore() {
  const response = await fetch(config.answersUrl, { credentials: "same-origin" });
  if (!response.ok) { setStatus("Could not load your saved answers.", true); return; }
  const data = await response.json();
  fill(data.answers);
  if (!data.editable) {
    for (const el of form.querySelectorAll("input, textarea, button")) el.disabled = true;
  }
  await viewer.ready.catch(() => undefined);
  const rois = data.answers.filter((a) => byKey[a.question]?.dataset.kind === "roi" &&
    a.value && Array.isArray(a.value.points) && a.value.points.length);
  if (rois.length) {
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

async function submitRead() {
  const button = document.getElementById("submit-read");
  if (!button || button.disabled) return;
  button.disabled = true;
  submitError.hidden = true;
  try {
    await pending;
    const data = await post(config.submitUrl);
    window.location.assign(data.next_url);
  } catch (err) {
    submitError.textContent = err.message;
    submitError.hidden = false;
    button.disabled = false;
  }
}

document.getElementById("submit-read")?.addEventListener("click", submitRead);
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submitRead(); return; }
  const typing = e.target.closest?.("input, textarea, select");
  if (!typing && (e.key === "v" || e.key === "V") && !e.target.closest?.("#viewer")) {
    document.getElementById("viewer").focus();
  }
});

restore().catch((err) => setStatus(`Could not restore answers: ${err.message}`, true));
viewer.ready.then(() => {
  document.body.dataset.viewerReady = "1";
  if (config.prefetch.length) viewer.prefetch(config.prefetch.flat());
}).catch(() => undefined);
