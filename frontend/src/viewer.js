// ReconTrial blinded DICOM viewer: a thin clinical-workstation layer over cornerstone3D.
//
// Public API (ES module exports, also published as window.ReconViewer):
//   mount(element, options) -> viewer        see README in frontend/ for the full reference
//   renderBackend() -> "gpu" | "cpu"         the rendering path cornerstone3D is using
//   fetchSeries(url) -> {buffer, contentType} one whole-series request (multipart/related)
//   registerSeries(imageIds, series)         its instances become the images of imageIds
//   DEFAULT_PRESETS, SHORTCUTS
//
// The overlay deliberately shows only slice index, window/level and zoom: the images are
// blinded, so nothing from the DICOM header (series description, names, UIDs) or the image URL
// is ever drawn.

import {
  Enums as csEnums,
  RenderingEngine,
  cache,
  eventTarget,
  getRenderingEngine,
  getShouldUseCPURendering,
  imageLoadPoolManager,
  imageLoader,
  init as csInit,
  metaData,
  setUseCPURendering,
  utilities as csUtils,
} from '@cornerstonejs/core';
import {
  EllipticalROITool,
  Enums as toolEnums,
  LengthTool,
  PanTool,
  RectangleROITool,
  StackScrollTool,
  SynchronizerManager,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  annotation as annotationApi,
  init as toolsInit,
  synchronizers,
  utilities as toolUtils,
} from '@cornerstonejs/tools';
import { init as dicomLoaderInit } from '@cornerstonejs/dicom-image-loader';
import {
  Enums as metadataEnums,
  metaData as metadataRegistry,
  utilities as metadataUtilities,
} from '@cornerstonejs/metadata';

import {
  TYPE_FOR_TOOL,
  annotationToMeasurement,
  hasStats,
  measurementToAnnotation,
  validateMeasurement,
} from './measurements.js';
import { DEFAULT_PRESETS, normalizePresets, presetWindow } from './presets.js';

const { MouseBindings, KeyboardBindings } = toolEnums;
const Events = csEnums.Events;
const ToolEvents = toolEnums.Events;

// Left-drag tools the reader can pick (toolbar button and key).
const PRIMARY_TOOLS = Object.freeze([
  { id: 'wl', tool: WindowLevelTool.toolName, key: 'w', label: 'W/L', title: 'Window/level' },
  { id: 'pan', tool: PanTool.toolName, key: 'p', label: 'Pan', title: 'Pan' },
  { id: 'zoom', tool: ZoomTool.toolName, key: 'z', label: 'Zoom', title: 'Zoom' },
  { id: 'length', tool: LengthTool.toolName, key: 'l', label: 'Length', title: 'Length (mm)' },
  {
    id: 'rectangle',
    tool: RectangleROITool.toolName,
    key: 'b',
    label: 'Rect',
    title: 'Rectangle ROI (box)',
  },
  { id: 'ellipse', tool: EllipticalROITool.toolName, key: 'e', label: 'Ellipse', title: 'Ellipse ROI' },
]);

export const SHORTCUTS = Object.freeze([
  ['Mouse wheel / \u2191 \u2193', 'Previous / next slice'],
  ['Page Up / Page Down', 'Jump 10% of the slices'],
  ['Home / End', 'First / last slice'],
  ['Left drag', 'Active tool (window/level by default)'],
  ['Right drag / Ctrl + wheel', 'Zoom'],
  ['Middle drag / Shift + left drag', 'Pan'],
  ['W', 'Window/level tool'],
  ['P / Z', 'Pan / zoom tool'],
  ['L', 'Length measurement (mm)'],
  ['B', 'Rectangle ROI (mean, SD, area)'],
  ['E', 'Ellipse ROI (mean, SD, area)'],
  ['1 \u2013 9', 'Window presets (1 = from image)'],
  ['R', 'Reset zoom, pan and window'],
  ['K', 'Link / unlink the two viewports (side-by-side)'],
  ['Delete', 'Delete the selected measurement'],
  ['?', 'Show / hide this help'],
  ['Esc', 'Close help'],
]);

const MODULE_URL = import.meta.url;
let initialized = null;
let instanceCounter = 0;

/** Initialises cornerstone3D once: rendering (GPU, CPU fallback), tools, DICOM loader. */
function initOnce(options = {}) {
  // cornerstone3D probes WebGL in init() and switches to its CPU renderer when no context can
  // be created (headless browsers, GPU blocklists, remote desktops). forceCPURendering lets a
  // site force the CPU path where WebGL exists but is unreliable.
  if (options.forceCPURendering) setUseCPURendering(true);
  if (initialized) return initialized;
  csInit();
  if (options.forceCPURendering) setUseCPURendering(true);
  toolsInit();
  const cores = typeof navigator !== 'undefined' ? navigator.hardwareConcurrency || 2 : 2;
  dicomLoaderInit({
    maxWebWorkers: Math.max(1, Math.min(4, Math.floor(cores / 2))),
    // Decoder wasm files are shipped next to viewer.js, never fetched from a CDN.
    wasmBasePath: new URL('./codecs/', MODULE_URL).href,
  });
  for (const Tool of [
    WindowLevelTool,
    PanTool,
    ZoomTool,
    StackScrollTool,
    LengthTool,
    RectangleROITool,
    EllipticalROITool,
  ]) {
    addTool(Tool);
  }
  initialized = true;
  return initialized;
}

/** "gpu" or "cpu": the rendering path in use (CPU when WebGL is unavailable). */
export function renderBackend() {
  return getShouldUseCPURendering() ? 'cpu' : 'gpu';
}

function checkImageIds(imageIds, name) {
  if (!Array.isArray(imageIds) || imageIds.length === 0) {
    throw new TypeError(`ReconViewer: ${name} must be a non-empty array of image ids`);
  }
  imageIds.forEach((id, i) => {
    if (typeof id !== 'string' || !id.includes(':')) {
      throw new TypeError(`ReconViewer: ${name}[${i}] is not an image id ("wadouri:<url>")`);
    }
  });
  return [...imageIds];
}

function el(tag, className, attrs = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  return node;
}

// Input types where keys are text: shortcuts stay off there (radio buttons, checkboxes,
// buttons and sliders do not take text, so the shortcuts work after clicking them).
const TEXT_INPUT_TYPES = new Set([
  'text', 'number', 'search', 'email', 'url', 'tel', 'password', 'date', 'time',
  'datetime-local', 'month', 'week',
]);

/** Whether keys typed at `target` are text (a text field, text area, select, editable). */
export function isTextEntry(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === 'TEXTAREA' || target.tagName === 'SELECT') {
    return true;
  }
  return target.tagName === 'INPUT' && TEXT_INPUT_TYPES.has((target.type || 'text').toLowerCase());
}

// ---------------------------------------------------------------- whole-series transfer

function indexOfBytes(haystack, needle, from) {
  const first = needle[0];
  let i = haystack.indexOf(first, from);
  while (i >= 0 && i <= haystack.length - needle.length) {
    let k = 1;
    while (k < needle.length && haystack[i + k] === needle[k]) k++;
    if (k === needle.length) return i;
    i = haystack.indexOf(first, i + 1);
  }
  return -1;
}

/**
 * The bodies of a multipart/related response (RFC 2046; DICOMweb WADO-RS series), in order.
 * `contentType` is the response's Content-Type with its boundary parameter.
 */
export function splitMultipart(buffer, contentType) {
  const match = /boundary="?([^";]+)"?/i.exec(contentType || '');
  if (!match) throw new Error('ReconViewer: the series response is not multipart (no boundary)');
  const bytes = new Uint8Array(buffer);
  const encode = (text) => new TextEncoder().encode(text);
  const delimiter = encode(`--${match[1]}`);
  const headerEnd = encode('\r\n\r\n');
  const parts = [];
  let at = indexOfBytes(bytes, delimiter, 0);
  while (at >= 0) {
    const afterDelimiter = at + delimiter.length;
    if (bytes[afterDelimiter] === 45 && bytes[afterDelimiter + 1] === 45) break; // "--": end
    const headersEnd = indexOfBytes(bytes, headerEnd, afterDelimiter);
    if (headersEnd < 0) throw new Error('ReconViewer: a series part has no header end');
    const start = headersEnd + headerEnd.length;
    const next = indexOfBytes(bytes, delimiter, start);
    if (next < 0) throw new Error('ReconViewer: the series response is truncated');
    // The CRLF before the next delimiter belongs to the delimiter.
    parts.push(buffer.slice(start, next - 2));
    at = next;
  }
  return parts;
}

/** One request for a whole series: resolves {buffer, contentType}; rejects on HTTP errors. */
export async function fetchSeries(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (!response.ok) throw new Error(`the server answered ${response.status} for the series`);
  return { buffer: await response.arrayBuffer(), contentType: response.headers.get('Content-Type') };
}

const registered = new Set();

/**
 * Makes the instances of a fetched series ({buffer, contentType}) the images of `imageIds`
 * ("wadouri:<url>", same order and count): the DICOM loader then reads them from memory
 * instead of requesting each URL. Resolves with the number of instances registered.
 */
export async function registerSeries(imageIds, series) {
  initOnce(); // the loader's metadata providers must exist before instances are added
  const parts = splitMultipart(series.buffer, series.contentType);
  if (parts.length !== imageIds.length) {
    throw new Error(`ReconViewer: the series has ${parts.length} images, expected ${imageIds.length}`);
  }
  await Promise.all(
    imageIds.map((imageId, i) => {
      if (registered.has(imageId)) return undefined;
      registered.add(imageId);
      // The loader's own entry for a fetched part-10 instance (what it stores after an XHR).
      return metadataUtilities.addDicomPart10Instance(imageId, parts[i]);
    }),
  );
  return parts.length;
}

/** Releases the instances registered for `imageIds` (a case the reader has left). */
export function releaseSeries(imageIds) {
  for (const imageId of imageIds) {
    if (!registered.delete(imageId)) continue;
    metadataRegistry.clearQuery(metadataEnums.MetadataModules.NATURALIZED, imageId);
  }
}

function fmt(value, digits = 0) {
  return Number.isFinite(value) ? value.toFixed(digits) : '\u2013';
}

class Viewer {
  constructor(element, options) {
    if (!(element instanceof HTMLElement)) {
      throw new TypeError('ReconViewer.mount: element must be an HTMLElement');
    }
    const layout = options.layout ?? 'single';
    if (!['single', 'side-by-side'].includes(layout)) {
      throw new TypeError('ReconViewer.mount: layout must be "single" or "side-by-side"');
    }
    this.layout = layout;
    this.stacks = [checkImageIds(options.imageIds, 'imageIds')];
    if (layout === 'side-by-side') {
      this.stacks.push(checkImageIds(options.secondImageIds, 'secondImageIds'));
    } else if (options.secondImageIds !== undefined) {
      throw new TypeError('ReconViewer.mount: secondImageIds needs layout "side-by-side"');
    }
    this.presets = normalizePresets(options.presets);
    this.keyboardTarget = options.keyboardTarget ?? element;
    this.initialSliceIndex = options.initialSliceIndex ?? 0;
    this.measurementListeners = new Set();
    this.removalListeners = new Set();
    this.errorListeners = new Set();
    if (options.onMeasurement) this.onMeasurement(options.onMeasurement);
    if (options.onMeasurementRemoved) this.onMeasurementRemoved(options.onMeasurementRemoved);
    if (options.onError) this.onError(options.onError);
    this.linked = options.linked ?? true;
    this.activeViewport = 0;
    this.primaryTool = 'wl';
    this.completed = new Set();
    this.silenced = new Set();
    this.emitTimers = new Map();
    this.destroyed = false;
    this.cleanups = [];

    initOnce(options);
    const id = ++instanceCounter;
    this.renderingEngineId = `reconviewer-${id}`;
    this.toolGroupId = `reconviewer-${id}-tools`;
    this.viewportIds = this.stacks.map((_, i) => `reconviewer-${id}-vp${i}`);
    this.syncIds = {
      slice: `reconviewer-${id}-slice`,
      voi: `reconviewer-${id}-voi`,
      zoomPan: `reconviewer-${id}-zoompan`,
    };

    this.root = element;
    this._buildDom();
    this.renderingEngine = new RenderingEngine(this.renderingEngineId);
    this.renderingEngine.setViewports(
      this.panes.map((pane, i) => ({
        viewportId: this.viewportIds[i],
        type: csEnums.ViewportType.STACK,
        element: pane.host,
        defaultOptions: { background: [0, 0, 0] },
      })),
    );
    this._setupTools();
    this._setupSynchronizers();
    this._listen();
    this.ready = this._loadStacks(this.stacks, this.initialSliceIndex);
    // A failed first load is reported through onError and by rejecting `ready`; keep the
    // browser from also logging it as an unhandled rejection when the page does not await it.
    this.ready.catch(() => {});
  }

  // ---------------------------------------------------------------- DOM

  _buildDom() {
    this.root.classList.add('rv-root');
    this.root.tabIndex = 0;
    this.root.setAttribute('role', 'application');
    this.root.setAttribute('aria-label', 'Image viewer');
    this.container = el('div', 'rv-container');
    const toolbar = el('div', 'rv-toolbar', { role: 'toolbar' });
    this.toolButtons = new Map();
    for (const t of PRIMARY_TOOLS) {
      const button = el('button', 'rv-btn', {
        type: 'button',
        'data-tool': t.id,
        title: `${t.title} (${t.key.toUpperCase()})`,
        text: t.label,
      });
      button.addEventListener('click', () => this.setTool(t.id));
      this.toolButtons.set(t.id, button);
      toolbar.append(button);
    }
    this.presetSelect = el('select', 'rv-presets', { title: 'Window preset (1-9)' });
    this._fillPresetSelect();
    this.presetSelect.addEventListener('change', () => {
      if (this.presetSelect.value !== '') this.applyPreset(Number(this.presetSelect.value));
      this.presetSelect.value = '';
      this.root.focus({ preventScroll: true });
    });
    toolbar.append(this.presetSelect);
    const reset = el('button', 'rv-btn', { type: 'button', 'data-action': 'reset', text: 'Reset' });
    reset.title = 'Reset zoom, pan and window (R)';
    reset.addEventListener('click', () => this.reset());
    toolbar.append(reset);
    if (this.layout === 'side-by-side') {
      this.linkButton = el('button', 'rv-btn', { type: 'button', 'data-action': 'link' });
      this.linkButton.title = 'Link scroll, zoom/pan and window of both images (K)';
      this.linkButton.addEventListener('click', () => this.setLinked(!this.linked));
      toolbar.append(this.linkButton);
    }
    const help = el('button', 'rv-btn rv-help-btn', {
      type: 'button',
      'data-action': 'help',
      title: 'Keyboard shortcuts (?)',
      text: '?',
    });
    help.addEventListener('click', () => this.toggleHelp());
    toolbar.append(help);

    const grid = el('div', `rv-grid rv-layout-${this.layout}`);
    this.panes = this.stacks.map((_, i) => {
      const pane = el('div', 'rv-pane', { 'data-viewport': String(i) });
      const host = el('div', 'rv-canvas-host');
      host.addEventListener('contextmenu', (e) => e.preventDefault());
      const overlay = el('div', 'rv-overlay', { 'aria-live': 'off' });
      const slice = el('span', 'rv-slice');
      const wl = el('span', 'rv-wl');
      const zoom = el('span', 'rv-zoom');
      const status = el('span', 'rv-status');
      const retry = el('button', 'rv-btn rv-retry', { type: 'button', text: 'Retry', hidden: '' });
      retry.title = 'Load the image again';
      retry.addEventListener('click', () => this.retry().catch(() => {}));
      overlay.append(slice, wl, zoom, status, retry);
      const slider = el('input', 'rv-slider', {
        type: 'range',
        min: '0',
        max: '0',
        step: '1',
        value: '0',
        'aria-label': 'Slice',
        tabindex: '-1',
      });
      slider.addEventListener('input', () => {
        this.setSliceIndex(Number(slider.value), i).catch(() => {});
      });
      slider.addEventListener('change', () => this.root.focus({ preventScroll: true }));
      const activate = () => {
        this.activeViewport = i;
        this._markActive();
      };
      pane.addEventListener('pointerenter', activate);
      pane.addEventListener('pointerdown', () => {
        activate();
        this.root.focus({ preventScroll: true });
      });
      pane.addEventListener('wheel', activate, { capture: true, passive: true });
      pane.append(host, overlay, slider);
      grid.append(pane);
      return { pane, host, overlay, slice, wl, zoom, status, retry, slider };
    });

    this.helpPanel = el('div', 'rv-help', { hidden: '', role: 'dialog', 'aria-label': 'Shortcuts' });
    const title = el('div', 'rv-help-title', { text: 'Keyboard and mouse' });
    const table = el('table');
    for (const [keys, action] of SHORTCUTS) {
      const row = el('tr');
      row.append(el('th', '', { text: keys }), el('td', '', { text: action }));
      table.append(row);
    }
    const close = el('button', 'rv-btn', { type: 'button', text: 'Close' });
    close.addEventListener('click', () => this.toggleHelp(false));
    this.helpPanel.append(title, table, close);

    this.container.append(toolbar, grid, this.helpPanel);
    this.root.replaceChildren(this.container);
    this._markActive();
    this._updateToolbar();
  }

  _fillPresetSelect() {
    this.presetSelect.replaceChildren(el('option', '', { value: '', text: 'Window preset\u2026' }));
    this.presets.forEach((preset, i) => {
      const label = i < 9 ? `${i + 1}  ${preset.name}` : preset.name;
      this.presetSelect.append(el('option', '', { value: String(i), text: label }));
    });
  }

  _markActive() {
    this.panes.forEach((p, i) => p.pane.classList.toggle('rv-active', i === this.activeViewport));
  }

  _updateToolbar() {
    for (const [id, button] of this.toolButtons) {
      button.classList.toggle('rv-on', id === this.primaryTool);
      button.setAttribute('aria-pressed', String(id === this.primaryTool));
    }
    if (this.linkButton) {
      this.linkButton.textContent = this.linked ? 'Linked' : 'Unlinked';
      this.linkButton.classList.toggle('rv-on', this.linked);
      this.linkButton.setAttribute('aria-pressed', String(this.linked));
    }
  }

  toggleHelp(show) {
    const visible = show ?? this.helpPanel.hidden;
    this.helpPanel.hidden = !visible;
    return visible;
  }

  // ---------------------------------------------------------------- tools and sync

  _setupTools() {
    const group = ToolGroupManager.createToolGroup(this.toolGroupId);
    this.toolGroup = group;
    for (const t of [StackScrollTool, WindowLevelTool, PanTool, ZoomTool]) {
      group.addTool(t.toolName);
    }
    group.addTool(LengthTool.toolName);
    group.addTool(RectangleROITool.toolName);
    group.addTool(EllipticalROITool.toolName);
    this.viewportIds.forEach((vp) => group.addViewport(vp, this.renderingEngineId));
    group.setToolActive(StackScrollTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Wheel }],
    });
    group.setToolActive(ZoomTool.toolName, {
      bindings: [
        { mouseButton: MouseBindings.Secondary },
        { mouseButton: MouseBindings.Wheel, modifierKey: KeyboardBindings.Ctrl },
      ],
    });
    group.setToolActive(PanTool.toolName, {
      bindings: [
        { mouseButton: MouseBindings.Auxiliary },
        { mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Shift },
      ],
    });
    // Measurements stay editable (handles, move) whatever the left-drag tool is.
    for (const t of [LengthTool, RectangleROITool, EllipticalROITool]) {
      group.setToolPassive(t.toolName);
    }
    this.setTool('wl');
  }

  /** Selects the left-drag tool: "wl", "pan", "zoom", "length", "rectangle" or "ellipse". */
  setTool(id) {
    const entry = PRIMARY_TOOLS.find((t) => t.id === id);
    if (!entry) {
      throw new TypeError(`ReconViewer.setTool: unknown tool ${id}`);
    }
    const previous = PRIMARY_TOOLS.find((t) => t.id === this.primaryTool);
    if (previous && previous.id !== id) this.toolGroup.setToolPassive(previous.tool);
    this.toolGroup.setToolActive(entry.tool, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this.primaryTool = id;
    this._updateToolbar();
  }

  _setupSynchronizers() {
    if (this.layout !== 'side-by-side') return;
    // Slice linking by position in the stack (i <-> i, proportional when counts differ):
    // blinded reconstructions of one acquisition share geometry but need not share
    // FrameOfReferenceUID or have every slice's position loaded, so the position-based
    // cornerstone image-slice synchronizer is not used. Only the viewport the reader is
    // driving propagates, which stops late-arriving events from pulling the source back.
    const sliceSync = SynchronizerManager.createSynchronizer(
      this.syncIds.slice,
      Events.STACK_NEW_IMAGE,
      (_sync, source, target) => this._syncSlice(source, target),
    );
    const voiSync = synchronizers.createVOISynchronizer(this.syncIds.voi, {
      syncInvertState: true,
      syncColormap: false,
    });
    const zoomPanSync = synchronizers.createZoomPanSynchronizer(this.syncIds.zoomPan);
    this.synchronizers = [sliceSync, voiSync, zoomPanSync];
    for (const sync of this.synchronizers) {
      for (const viewportId of this.viewportIds) {
        sync.add({ renderingEngineId: this.renderingEngineId, viewportId });
      }
    }
    this.setLinked(this.linked);
  }

  _syncSlice(source, target) {
    const engine = getRenderingEngine(this.renderingEngineId);
    if (!engine) return undefined;
    const sourceIndex = this.viewportIds.indexOf(source.viewportId);
    if (sourceIndex !== this.activeViewport) return undefined;
    const s = engine.getViewport(source.viewportId);
    const t = engine.getViewport(target.viewportId);
    const ns = s.getImageIds().length;
    const nt = t.getImageIds().length;
    const i = s.getCurrentImageIdIndex();
    const j = ns === nt ? i : Math.round((i * (nt - 1)) / Math.max(ns - 1, 1));
    if (t.getCurrentImageIdIndex() === j) return undefined;
    return t.setImageIdIndex(j);
  }

  /** Links (true) or unlinks scroll, zoom/pan and window/level of the two viewports. */
  setLinked(linked) {
    this.linked = Boolean(linked);
    for (const sync of this.synchronizers ?? []) sync.setEnabled(this.linked);
    if (this.linked && this.synchronizers) {
      // Align the follower with the viewport the reader is using now.
      const engine = this.renderingEngine;
      const src = engine.getViewport(this.viewportIds[this.activeViewport]);
      const other = this.viewportIds[1 - this.activeViewport];
      const tgt = engine.getViewport(other);
      if (src && tgt && src.getImageIds().length && tgt.getImageIds().length) {
        this._syncSlice(
          { viewportId: this.viewportIds[this.activeViewport] },
          { viewportId: other },
        );
        const voi = src.getProperties().voiRange;
        if (voi) tgt.setProperties({ voiRange: { ...voi } });
        tgt.setZoom?.(src.getZoom());
        tgt.setPan?.(src.getPan());
        tgt.render();
      }
    }
    this._updateToolbar();
    return this.linked;
  }

  // ---------------------------------------------------------------- events

  _listen() {
    const on = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts);
      this.cleanups.push(() => target.removeEventListener(type, fn, opts));
    };
    this.panes.forEach((pane, i) => {
      const update = () => this._updateOverlay(i);
      for (const type of [
        Events.IMAGE_RENDERED,
        Events.STACK_NEW_IMAGE,
        Events.VOI_MODIFIED,
        Events.CAMERA_MODIFIED,
      ]) {
        on(pane.host, type, update);
      }
    });
    // Capture phase: cornerstone focuses its canvas element and handles keys there too.
    // keyboardTarget (e.g. document) makes the shortcuts work wherever the focus is.
    on(this.keyboardTarget, 'keydown', (e) => this._onKey(e), true);
    for (const type of [ToolEvents.ANNOTATION_COMPLETED, ToolEvents.ANNOTATION_MODIFIED]) {
      on(eventTarget, type, (e) => this._onAnnotation(e, type === ToolEvents.ANNOTATION_COMPLETED));
    }
    on(eventTarget, ToolEvents.ANNOTATION_REMOVED, (e) => this._onAnnotationRemoved(e));
    on(eventTarget, Events.IMAGE_LOAD_ERROR, (e) => this._onLoadError(e));
    if (typeof ResizeObserver !== 'undefined') {
      this.resizeObserver = new ResizeObserver(() => {
        if (!this.destroyed) this.renderingEngine.resize(true, true);
      });
      this.panes.forEach((p) => this.resizeObserver.observe(p.host));
    }
  }

  _onKey(e) {
    if (e.defaultPrevented || e.altKey || e.metaKey) return;
    if (isTextEntry(e.target) || e.ctrlKey || this.destroyed) return;
    const vp = this.activeViewport;
    const n = this.stacks[vp].length;
    const current = this._viewport(vp).getCurrentImageIdIndex();
    const step = Math.max(1, Math.round(n / 10));
    // A slice that fails to load is reported through onError and the pane status.
    const go = (index) => this.setSliceIndex(index, vp).catch(() => {});
    let handled = true;
    const key = e.key;
    if (key === 'ArrowDown') go(current + 1);
    else if (key === 'ArrowUp') go(current - 1);
    else if (key === 'PageDown') go(current + step);
    else if (key === 'PageUp') go(current - step);
    else if (key === 'Home') go(0);
    else if (key === 'End') go(n - 1);
    else if (key === 'r' || key === 'R') this.reset();
    else if (key === '?') this.toggleHelp();
    else if (key === 'Escape') {
      if (this.helpPanel.hidden) handled = false;
      else this.toggleHelp(false);
    } else if (key === 'k' || key === 'K') {
      if (this.layout === 'side-by-side') this.setLinked(!this.linked);
      else handled = false;
    } else if (key === 'Delete' || key === 'Backspace') {
      handled = this.deleteSelectedMeasurement();
    } else if (/^[1-9]$/.test(key) && Number(key) <= this.presets.length) {
      this.applyPreset(Number(key) - 1);
    } else {
      const tool = PRIMARY_TOOLS.find((t) => t.key === key.toLowerCase());
      if (tool && !e.shiftKey) this.setTool(tool.id);
      else handled = false;
    }
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  _onLoadError(e) {
    const imageId = e.detail?.imageId;
    const index = this.stacks.findIndex((s) => s.includes(imageId));
    if (index < 0) return;
    const slice = this.stacks[index].indexOf(imageId);
    this._showFailure(index, slice);
    const detail = e.detail?.error?.message ?? e.detail?.error?.status ?? '';
    this._emitError(new Error(`image failed to load ${detail}`.trim()), index, slice);
  }

  _showFailure(viewport, slice) {
    const pane = this.panes[viewport];
    pane.failedSlice = slice;
    pane.status.textContent = `Image ${slice + 1} failed to load`;
    pane.retry.hidden = false;
  }

  _clearFailure(viewport) {
    const pane = this.panes[viewport];
    pane.failedSlice = undefined;
    pane.status.textContent = '';
    pane.retry.hidden = true;
  }

  /**
   * Loads the images that failed again (the stack if its first image failed, else the
   * failed slice); measurements are kept. Resolves with getState().
   */
  async retry() {
    this._throwIfDestroyed();
    await Promise.all(
      this.panes.map(async (pane, i) => {
        if (pane.failedSlice === undefined) return;
        const slice = pane.failedSlice;
        const imageIds = this.stacks[i];
        const viewport = this._viewport(i);
        pane.status.textContent = 'Loading\u2026';
        pane.retry.hidden = true;
        try {
          if (viewport.getCornerstoneImage()) await viewport.setImageIdIndex(slice);
          else await viewport.setStack(imageIds, slice);
        } catch (error) {
          this._emitError(error, i, slice);
        }
        if (viewport.getCornerstoneImage()?.imageId !== imageIds[slice]) {
          this._showFailure(i, slice);
          return;
        }
        this._clearFailure(i);
        viewport.render();
        this._updateOverlay(i);
      }),
    );
    if (this.panes.some((p) => p.failedSlice !== undefined)) {
      throw new Error('ReconViewer: an image still fails to load');
    }
    return this.getState();
  }

  /** Replaces the window presets (keys 1-9 and the toolbar menu). */
  setPresets(presets) {
    this._throwIfDestroyed();
    this.presets = normalizePresets(presets);
    this._fillPresetSelect();
  }

  _emitError(error, viewport, sliceIndex) {
    for (const fn of this.errorListeners) {
      try {
        fn({ message: String(error?.message ?? error), viewport, slice_index: sliceIndex });
      } catch (err) {
        console.error(err);
      }
    }
  }

  _updateOverlay(i) {
    if (this.destroyed) return;
    const viewport = this._viewport(i);
    const pane = this.panes[i];
    if (!viewport) return;
    const n = this.stacks[i].length;
    const index = viewport.getCurrentImageIdIndex();
    pane.slice.textContent = `${index + 1}/${n}`;
    pane.slider.max = String(n - 1);
    if (Number(pane.slider.value) !== index) pane.slider.value = String(index);
    const voi = viewport.getProperties().voiRange;
    if (voi) {
      const { windowWidth, windowCenter } = csUtils.windowLevel.toWindowLevel(voi.lower, voi.upper);
      pane.wl.textContent = `W ${fmt(windowWidth)} L ${fmt(windowCenter)}`;
      pane.wl.dataset.width = String(windowWidth);
      pane.wl.dataset.center = String(windowCenter);
    }
    const { zoom } = this._geometry(i);
    pane.zoom.textContent = `Zoom ${fmt(zoom, 2)}\u00d7`;
    pane.zoom.dataset.zoom = String(zoom);
    pane.pane.dataset.sliceIndex = String(index);
  }

  /**
   * Zoom and pan as the reader sees them, the same on the GPU and CPU paths (cornerstone's
   * own getZoom/getPan use different units on each): zoom = displayed size / size that fits
   * the viewport (1 after reset); pan = offset in CSS pixels of the image centre from the
   * viewport centre.
   */
  _geometry(i) {
    const viewport = this._viewport(i);
    const image = viewport?.getCornerstoneImage?.();
    const imageId = viewport?.getCurrentImageId();
    const element = viewport?.element;
    // getImageData() is undefined until the first image is on screen (CPU path).
    if (!image || !imageId || !viewport.getImageData() || !element?.clientWidth) {
      return { zoom: null, pan: null };
    }
    const cols = image.columns ?? image.width;
    const rows = image.rows ?? image.height;
    const world = (x, y) => csUtils.imageToWorldCoords(imageId, [x, y]);
    const origin = world(0, 0);
    const alongX = world(cols, 0);
    const alongY = world(0, rows);
    const widthMm = Math.hypot(...alongX.map((v, k) => v - origin[k]));
    const heightMm = Math.hypot(...alongY.map((v, k) => v - origin[k]));
    const c0 = viewport.worldToCanvas(origin);
    const cx = viewport.worldToCanvas(alongX);
    const cy = viewport.worldToCanvas(alongY);
    const displayedPxPerMm = Math.hypot(cx[0] - c0[0], cx[1] - c0[1]) / widthMm;
    const fitPxPerMm = Math.min(element.clientWidth / widthMm, element.clientHeight / heightMm);
    const centre = viewport.worldToCanvas(world(cols / 2, rows / 2));
    return {
      zoom: displayedPxPerMm / fitPxPerMm,
      pan: [centre[0] - element.clientWidth / 2, centre[1] - element.clientHeight / 2],
    };
  }

  // ---------------------------------------------------------------- stacks

  _viewport(i) {
    return this.renderingEngine?.getViewport(this.viewportIds[i]);
  }

  /** Runs fn with linking suspended, so each viewport gets its own image's window. */
  async _unlinked(fn) {
    for (const sync of this.synchronizers ?? []) sync.setEnabled(false);
    try {
      return await fn();
    } finally {
      for (const sync of this.synchronizers ?? []) sync.setEnabled(this.linked);
    }
  }

  async _loadStacks(stacks, initialSlice) {
    this._removeAnnotations(this.stacks.flat());
    this.stacks = stacks;
    this.completed.clear();
    await this._unlinked(() => this._showStacks(stacks, initialSlice));
    return this.getState();
  }

  async _showStacks(stacks, initialSlice) {
    await Promise.all(
      stacks.map(async (imageIds, i) => {
        const viewport = this._viewport(i);
        const pane = this.panes[i];
        pane.status.textContent = 'Loading\u2026';
        toolUtils.stackPrefetch.disable(pane.host);
        let start = initialSlice === 'middle' ? Math.floor(imageIds.length / 2) : initialSlice;
        if (!Number.isInteger(start) || start < 0 || start >= imageIds.length) start = 0;
        // setStack settles without an image when the load fails (IMAGE_LOAD_ERROR has then
        // reported it through onError); a throw here is reported the same way.
        let failure = null;
        try {
          await viewport.setStack(imageIds, start);
        } catch (error) {
          failure = error;
          this._emitError(error, i, start);
        }
        if (failure || viewport.getCornerstoneImage()?.imageId !== imageIds[start]) {
          this._showFailure(i, start);
          throw new Error(`ReconViewer: image ${start + 1} of viewport ${i} failed to load`);
        }
        this._clearFailure(i);
        viewport.resetCamera();
        viewport.resetProperties();
        viewport.render();
        // Load the rest of this stack in the background so scrolling is immediate.
        toolUtils.stackPrefetch.enable(pane.host);
        this._updateOverlay(i);
      }),
    );
  }

  /**
   * Shows new images (the next case). In side-by-side layout pass both stacks. Measurements
   * on the previous images are removed. Resolves with getState() once the first image shows.
   */
  loadStack(imageIds, secondImageIds, options = {}) {
    this._throwIfDestroyed();
    const stacks = [checkImageIds(imageIds, 'imageIds')];
    if (this.layout === 'side-by-side') {
      stacks.push(checkImageIds(secondImageIds, 'secondImageIds'));
    } else if (secondImageIds !== undefined && secondImageIds !== null) {
      throw new TypeError('ReconViewer.loadStack: secondImageIds needs layout "side-by-side"');
    }
    this.ready = this._loadStacks(stacks, options.initialSliceIndex ?? this.initialSliceIndex);
    return this.ready;
  }

  /** Shows slice `index` (0-based) in viewport `viewport` (linked viewports follow). */
  setSliceIndex(index, viewport = this.activeViewport) {
    this._throwIfDestroyed();
    const vp = this._viewport(viewport);
    if (!vp) throw new RangeError(`ReconViewer: no viewport ${viewport}`);
    const n = this.stacks[viewport].length;
    const clamped = Math.min(n - 1, Math.max(0, Math.round(index)));
    this.activeViewport = viewport;
    this._markActive();
    if (vp.getCurrentImageIdIndex() === clamped) return Promise.resolve(clamped);
    return Promise.resolve(vp.setImageIdIndex(clamped)).then(() => clamped);
  }

  /** Loads images into cornerstone's cache in the background (e.g. the next case). */
  prefetch(imageIds) {
    this._throwIfDestroyed();
    const ids = checkImageIds(imageIds, 'prefetch imageIds');
    const jobs = ids.map(
      (imageId) =>
        new Promise((resolve) => {
          if (cache.isLoaded(imageId)) {
            resolve(true);
            return;
          }
          const request = () =>
            imageLoader
              .loadAndCacheImage(imageId, { priority: 5, requestType: 'prefetch' })
              .then(
                () => resolve(true),
                () => resolve(false),
              );
          imageLoadPoolManager.addRequest(request, csEnums.RequestType.Prefetch, { imageId }, 5);
        }),
    );
    return Promise.all(jobs).then((results) => ({
      requested: ids.length,
      loaded: results.filter(Boolean).length,
    }));
  }

  // ---------------------------------------------------------------- display

  /** Applies preset `index` (see DEFAULT_PRESETS / options.presets). */
  applyPreset(index) {
    this._throwIfDestroyed();
    const preset = this.presets[index];
    if (!preset) throw new RangeError(`ReconViewer.applyPreset: no preset ${index}`);
    if (preset.kind === 'auto') {
      // Each image gets the window it asks for, also when linked (as when a case opens).
      this._unlinked(() =>
        this.viewportIds.forEach((_, i) => {
          this._viewport(i).resetProperties();
          this._viewport(i).render();
        }),
      );
      this.panes.forEach((_, i) => this._updateOverlay(i));
      return this.getState();
    }
    // Linked: computed on the image in use and copied to the other by the VOI synchronizer.
    const targets =
      this.linked && this.layout === 'side-by-side'
        ? [this.activeViewport]
        : this.viewportIds.map((_, i) => i);
    for (const i of targets) {
      const viewport = this._viewport(i);
      const image = viewport.getCornerstoneImage();
      if (!image) continue;
      // Pixel data is already rescaled when cornerstone pre-scaled it in the decoder.
      const scaled = Boolean(image.preScale?.scaled);
      const { width, center } = presetWindow(
        preset,
        image.getPixelData(),
        scaled ? 1 : (image.slope ?? 1),
        scaled ? 0 : (image.intercept ?? 0),
      );
      viewport.setProperties({ voiRange: csUtils.windowLevel.toLowHighRange(width, center) });
      viewport.render();
    }
    this.panes.forEach((_, i) => this._updateOverlay(i));
    return this.getState();
  }

  /** Sets the window explicitly (same units as the overlay, DICOM linear VOI function). */
  setWindow(width, center, viewport = this.activeViewport) {
    this._throwIfDestroyed();
    if (!(Number.isFinite(width) && width > 0 && Number.isFinite(center))) {
      throw new RangeError('ReconViewer.setWindow: width must be > 0 and center finite');
    }
    const vp = this._viewport(viewport);
    this.activeViewport = viewport;
    vp.setProperties({ voiRange: csUtils.windowLevel.toLowHighRange(width, center) });
    vp.render();
    this._updateOverlay(viewport);
  }

  /** Resets zoom, pan and window of all viewports (the slice is kept). */
  reset() {
    this._throwIfDestroyed();
    this._unlinked(() =>
      this.viewportIds.forEach((_, i) => {
        const viewport = this._viewport(i);
        viewport.resetCamera();
        viewport.resetProperties();
        viewport.render();
      }),
    );
    this.panes.forEach((_, i) => this._updateOverlay(i));
    return this.getState();
  }

  /** Display state of each viewport, e.g. to restore it or to log reading behaviour. */
  getState() {
    return {
      layout: this.layout,
      linked: this.linked,
      tool: this.primaryTool,
      active_viewport: this.activeViewport,
      render_backend: renderBackend(),
      viewports: this.viewportIds.map((_, i) => {
        const viewport = this._viewport(i);
        const voi = viewport?.getProperties().voiRange;
        const window = voi ? csUtils.windowLevel.toWindowLevel(voi.lower, voi.upper) : null;
        const { zoom, pan } = this._geometry(i);
        return {
          slice_index: viewport ? viewport.getCurrentImageIdIndex() : null,
          slice_count: this.stacks[i].length,
          window_width: window ? window.windowWidth : null,
          window_center: window ? window.windowCenter : null,
          zoom,
          pan,
        };
      }),
    };
  }

  /**
   * Client (CSS pixel) coordinates of image point [x, y] in a viewport, for automation and
   * for anchoring page UI next to a finding. Image coordinates as in the measurement JSON.
   */
  imageToClient(point, viewport = 0) {
    const vp = this._viewport(viewport);
    const imageId = vp.getCurrentImageId();
    const world = csUtils.imageToWorldCoords(imageId, point);
    const [cx, cy] = vp.worldToCanvas(world);
    const rect = this.panes[viewport].host.getBoundingClientRect();
    return [rect.left + cx, rect.top + cy];
  }

  // ---------------------------------------------------------------- measurements

  onMeasurement(callback) {
    return this._subscribe(this.measurementListeners, callback, 'onMeasurement');
  }

  onMeasurementRemoved(callback) {
    return this._subscribe(this.removalListeners, callback, 'onMeasurementRemoved');
  }

  onError(callback) {
    return this._subscribe(this.errorListeners, callback, 'onError');
  }

  _subscribe(set, callback, name) {
    if (typeof callback !== 'function') {
      throw new TypeError(`ReconViewer.${name}: callback must be a function`);
    }
    set.add(callback);
    return () => set.delete(callback);
  }

  _viewportOfAnnotation(annotation) {
    if (!annotation?.metadata || !(annotation.metadata.toolName in TYPE_FOR_TOOL)) return -1;
    return this.stacks.findIndex((ids) => ids.includes(annotation.metadata.referencedImageId));
  }

  _ourAnnotations() {
    const all = annotationApi.state.getAllAnnotations?.() ?? [];
    return all.filter((a) => this._viewportOfAnnotation(a) >= 0);
  }

  _onAnnotation(e, completed) {
    const annotation = e.detail?.annotation;
    if (this.destroyed || this._viewportOfAnnotation(annotation) < 0) return;
    const uid = annotation.annotationUID;
    if (completed) this.completed.add(uid);
    if (!this.completed.has(uid) || this.silenced.has(uid)) return;
    this._scheduleEmit(uid, 0);
  }

  _scheduleEmit(uid, attempt) {
    clearTimeout(this.emitTimers.get(uid));
    this.emitTimers.set(
      uid,
      setTimeout(() => {
        this.emitTimers.delete(uid);
        const annotation = annotationApi.state.getAnnotation(uid);
        if (!annotation || this.destroyed) return;
        if (!hasStats(annotation)) {
          // Statistics are computed on the next render (throttled by the tool); try again.
          if (attempt < 20) this._scheduleEmit(uid, attempt + 1);
          return;
        }
        const viewport = this._viewportOfAnnotation(annotation);
        const measurement = annotationToMeasurement(annotation, viewport, this.stacks[viewport]);
        for (const fn of this.measurementListeners) {
          try {
            fn(measurement);
          } catch (error) {
            console.error(error);
          }
        }
      }, 200),
    );
  }

  _onAnnotationRemoved(e) {
    const annotation = e.detail?.annotation;
    if (this.destroyed || this._viewportOfAnnotation(annotation) < 0) return;
    const uid = annotation.annotationUID;
    clearTimeout(this.emitTimers.get(uid));
    this.emitTimers.delete(uid);
    if (!this.completed.delete(uid) || this.silenced.has(uid)) return;
    for (const fn of this.removalListeners) {
      try {
        fn(uid);
      } catch (error) {
        console.error(error);
      }
    }
  }

  /** All measurements on the current images (statistics null where not yet computed). */
  getMeasurements() {
    this._throwIfDestroyed();
    return this._ourAnnotations().map((a) => {
      const viewport = this._viewportOfAnnotation(a);
      return annotationToMeasurement(a, viewport, this.stacks[viewport]);
    });
  }

  /**
   * Redraws saved measurements (resume mid-case). Replaces measurements with the same uid.
   * Resolves with the measurements as the viewer now computes them (statistics of ROIs on
   * slices other than the displayed one are computed when that slice is shown).
   */
  async loadMeasurements(list) {
    this._throwIfDestroyed();
    if (!Array.isArray(list)) {
      throw new TypeError('ReconViewer.loadMeasurements: expected an array');
    }
    const prepared = list.map((m, index) => {
      const viewport = m?.viewport ?? 0;
      if (!Number.isInteger(viewport) || viewport < 0 || viewport >= this.stacks.length) {
        throw new RangeError(`ReconViewer.loadMeasurements: item ${index} has bad viewport`);
      }
      const points = validateMeasurement(m, index, this.stacks[viewport].length);
      return { m, viewport, points, imageId: this.stacks[viewport][m.slice_index] };
    });
    // Geometry (imagePlaneModule) is known once an image is loaded.
    await Promise.all(prepared.map((p) => imageLoader.loadAndCacheImage(p.imageId)));
    const uids = [];
    for (const { m, viewport, points, imageId } of prepared) {
      const vp = this._viewport(viewport);
      const frameOfReference = metaData.get('imagePlaneModule', imageId)?.frameOfReferenceUID;
      const annotation = measurementToAnnotation(
        m,
        points,
        imageId,
        frameOfReference ?? vp.getFrameOfReferenceUID(),
      );
      const uid = annotation.annotationUID;
      this.silenced.add(uid);
      if (annotationApi.state.getAnnotation(uid)) annotationApi.state.removeAnnotation(uid);
      annotationApi.state.addAnnotation(annotation, vp.element);
      this.completed.add(uid);
      uids.push(uid);
    }
    toolUtils.triggerAnnotationRenderForViewportIds(this.viewportIds);
    await new Promise((resolve) => setTimeout(resolve, 250));
    for (const uid of uids) this.silenced.delete(uid);
    const wanted = new Set(uids);
    return this.getMeasurements().filter((m) => wanted.has(m.uid));
  }

  /** Deletes the selected measurement; true when one was deleted. */
  deleteSelectedMeasurement() {
    const selected = annotationApi.selection.getAnnotationsSelected?.() ?? [];
    const ours = selected.filter((uid) =>
      this._ourAnnotations().some((a) => a.annotationUID === uid),
    );
    for (const uid of ours) this.removeMeasurement(uid);
    return ours.length > 0;
  }

  /** Removes a measurement by uid (onMeasurementRemoved fires). */
  removeMeasurement(uid) {
    this._throwIfDestroyed();
    const annotation = annotationApi.state.getAnnotation(uid);
    if (!annotation || this._viewportOfAnnotation(annotation) < 0) return false;
    annotationApi.state.removeAnnotation(uid);
    toolUtils.triggerAnnotationRenderForViewportIds(this.viewportIds);
    return true;
  }

  /** Removes every measurement on the current images. */
  clearMeasurements() {
    this._throwIfDestroyed();
    this._removeAnnotations(this.stacks.flat());
  }

  _removeAnnotations(imageIds) {
    const ids = new Set(imageIds);
    const all = annotationApi.state.getAllAnnotations?.() ?? [];
    for (const a of all) {
      if (a.metadata?.toolName in TYPE_FOR_TOOL && ids.has(a.metadata.referencedImageId)) {
        this.silenced.add(a.annotationUID);
        annotationApi.state.removeAnnotation(a.annotationUID);
        this.silenced.delete(a.annotationUID);
        this.completed.delete(a.annotationUID);
      }
    }
    if (this.renderingEngine) toolUtils.triggerAnnotationRenderForViewportIds(this.viewportIds);
  }

  // ---------------------------------------------------------------- teardown

  _throwIfDestroyed() {
    if (this.destroyed) throw new Error('ReconViewer: this viewer has been destroyed');
  }

  /** Releases the rendering engine, tools, synchronizers and listeners; clears the element. */
  destroy() {
    if (this.destroyed) return;
    this._removeAnnotations(this.stacks.flat());
    this.destroyed = true;
    for (const timer of this.emitTimers.values()) clearTimeout(timer);
    this.emitTimers.clear();
    for (const cleanup of this.cleanups) cleanup();
    this.resizeObserver?.disconnect();
    this.panes.forEach((p) => toolUtils.stackPrefetch.disable(p.host));
    for (const id of Object.values(this.syncIds)) {
      if (SynchronizerManager.getSynchronizer(id)) SynchronizerManager.destroySynchronizer(id);
    }
    ToolGroupManager.destroyToolGroup(this.toolGroupId);
    this.renderingEngine.destroy();
    this.renderingEngine = null;
    this.root.replaceChildren();
    this.root.classList.remove('rv-root');
  }
}

/**
 * Mounts a viewer in `element`. Returns the viewer at once; `viewer.ready` resolves when the
 * first image is shown. Options: imageIds (required), layout "single" | "side-by-side",
 * secondImageIds, presets, onMeasurement, onMeasurementRemoved, onError, linked (true),
 * initialSliceIndex (0 or "middle"), forceCPURendering (first mount only), keyboardTarget
 * (where the shortcuts listen; default the viewer element, e.g. `document` for a page).
 */
export function mount(element, options = {}) {
  return new Viewer(element, options);
}

export { DEFAULT_PRESETS };

const api = Object.freeze({
  mount,
  renderBackend,
  fetchSeries,
  registerSeries,
  releaseSeries,
  splitMultipart,
  isTextEntry,
  DEFAULT_PRESETS,
  SHORTCUTS,
});
if (typeof window !== 'undefined') {
  window.ReconViewer = api;
  window.dispatchEvent(new CustomEvent('reconviewer:ready', { detail: api }));
}
export default api;
