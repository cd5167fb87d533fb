// Window/level presets for MR.
//
// MR signal has no absolute scale (unlike CT Hounsfield units), so the default presets are
// RELATIVE: width and centre are fractions of the current slice's robust intensity range
// [p_low, p_high] = [0.5th, 99.5th] percentile of the displayed pixel values (after the DICOM
// modality LUT). With r = p_high - p_low:
//   window width  = width  * r
//   window centre = p_low + center * r
// An ABSOLUTE preset gives width and centre directly in stored-value units (after rescale).
// The "auto" preset restores the window the image itself asks for: the DICOM
// WindowCenter/WindowWidth tags when present, otherwise cornerstone's min/max window.
//
// A preset is {name, kind: "auto" | "relative" | "absolute", width?, center?}.

export const DEFAULT_PRESETS = Object.freeze([
  Object.freeze({ name: 'Auto (from image)', kind: 'auto' }),
  // Whole robust range, centred: low contrast, nothing clipped.
  Object.freeze({ name: 'Soft', kind: 'relative', width: 1.0, center: 0.5 }),
  // Narrower window placed low: tissue appears brighter, bright fat/fluid saturates.
  Object.freeze({ name: 'Bright', kind: 'relative', width: 0.6, center: 0.35 }),
  // Wider window placed high: overall darker, preserves detail in the brightest structures.
  Object.freeze({ name: 'Dark', kind: 'relative', width: 1.2, center: 0.7 }),
]);

export const LOW_PERCENTILE = 0.005;
export const HIGH_PERCENTILE = 0.995;
// Percentiles are taken on at most this many evenly strided samples (speed on 512^2+ images).
const MAX_SAMPLES = 65536;

/** Validates user-supplied presets and returns a frozen copy; throws on bad input. */
export function normalizePresets(presets) {
  if (presets === undefined || presets === null) return DEFAULT_PRESETS;
  if (!Array.isArray(presets) || presets.length === 0) {
    throw new TypeError('ReconViewer: presets must be a non-empty array');
  }
  return Object.freeze(
    presets.map((preset, index) => {
      const where = `ReconViewer: presets[${index}]`;
      if (!preset || typeof preset.name !== 'string' || !preset.name) {
        throw new TypeError(`${where} needs a non-empty name`);
      }
      const kind = preset.kind ?? 'absolute';
      if (!['auto', 'relative', 'absolute'].includes(kind)) {
        throw new TypeError(`${where}.kind must be "auto", "relative" or "absolute"`);
      }
      if (kind !== 'auto') {
        for (const key of ['width', 'center']) {
          if (typeof preset[key] !== 'number' || !Number.isFinite(preset[key])) {
            throw new TypeError(`${where}.${key} must be a finite number`);
          }
        }
        if (preset.width <= 0) throw new RangeError(`${where}.width must be positive`);
      }
      return Object.freeze({ ...preset, kind });
    }),
  );
}

/** [low, high] percentiles of a typed array of pixel values (strided sample, NaNs ignored). */
export function robustRange(pixels, low = LOW_PERCENTILE, high = HIGH_PERCENTILE) {
  const n = pixels.length;
  if (!n) throw new Error('ReconViewer: empty image, cannot compute a window');
  const stride = Math.max(1, Math.floor(n / MAX_SAMPLES));
  const sample = new Float64Array(Math.ceil(n / stride));
  let count = 0;
  for (let i = 0; i < n; i += stride) {
    const value = pixels[i];
    if (!Number.isNaN(value)) sample[count++] = value;
  }
  const sorted = sample.subarray(0, count).sort();
  const pick = (q) => sorted[Math.min(count - 1, Math.max(0, Math.round(q * (count - 1))))];
  return [pick(low), pick(high)];
}

/** Window {width, center} of a relative or absolute preset for an image's pixel values. */
export function presetWindow(preset, pixels, slope = 1, intercept = 0) {
  if (preset.kind === 'absolute') return { width: preset.width, center: preset.center };
  if (preset.kind !== 'relative') throw new Error(`preset ${preset.name} has no fixed window`);
  let [lo, hi] = robustRange(pixels);
  lo = lo * slope + intercept;
  hi = hi * slope + intercept;
  const range = Math.max(hi - lo, 1e-6);
  return { width: preset.width * range, center: lo + preset.center * range };
}
