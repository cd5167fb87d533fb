// Conversion between cornerstone3D annotations and the reading form's measurement JSON.
//
// Measurement JSON (what onMeasurement delivers and loadMeasurements accepts):
//   {
//     uid:         annotation UID (stable across modifications; use it to update a saved answer),
//     type:        "ellipse" | "rectangle" | "length",
//     viewport:    0 (left / single) or 1 (right, side-by-side layout),
//     slice_index: 0-based index into the viewport's imageIds,
//     points:      [[x, y], ...] image pixel coordinates: x along columns, y along rows, (0, 0)
//                  at the top-left CORNER of the first pixel, so pixel (row r, column c) covers
//                  [c, c + 1) x [r, r + 1) and its centre is (c + 0.5, r + 0.5).
//                  rectangle: 4 corners; ellipse: 4 axis end points (bottom, top, left, right);
//                  length: 2 end points,
//     mean, sd:    mean and population standard deviation (divide by N) of the pixel values
//                  inside the ROI, after the modality LUT (null for length),
//     pixel_count: number of pixels inside the ROI (null for length),
//     area_mm2:    ROI area in mm^2 from PixelSpacing (null for length or without PixelSpacing),
//     length_mm:   length in mm (null for ROIs or without PixelSpacing)
//   }
// loadMeasurements needs only type, slice_index, points (and viewport, uid when known); a
// rectangle may also be given by 2 opposite corners.

import { metaData, utilities as csUtils } from '@cornerstonejs/core';
import { EllipticalROITool, LengthTool, RectangleROITool } from '@cornerstonejs/tools';

export const TOOL_FOR_TYPE = Object.freeze({
  ellipse: EllipticalROITool.toolName,
  rectangle: RectangleROITool.toolName,
  length: LengthTool.toolName,
});
export const TYPE_FOR_TOOL = Object.freeze(
  Object.fromEntries(Object.entries(TOOL_FOR_TYPE).map(([type, tool]) => [tool, type])),
);

const MM = 'mm';
const MM2 = 'mm\u00b2';

function finiteOrNull(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** Statistics block of an annotation for its referenced image, or null when not computed. */
function statsFor(annotation) {
  const cached = annotation.data?.cachedStats ?? {};
  const imageId = annotation.metadata.referencedImageId;
  const key = Object.keys(cached).find((k) => k === `imageId:${imageId}`) ?? Object.keys(cached)[0];
  return key ? cached[key] : null;
}

/** True when the tool has computed the statistics the JSON needs. */
export function hasStats(annotation) {
  const stats = statsFor(annotation);
  if (!stats) return false;
  if (TYPE_FOR_TOOL[annotation.metadata.toolName] === 'length') {
    return typeof stats.length === 'number';
  }
  return typeof stats.area === 'number' && typeof stats.mean === 'number';
}

/** Measurement JSON for an annotation shown in viewport `viewportIndex`. */
export function annotationToMeasurement(annotation, viewportIndex, imageIds) {
  const type = TYPE_FOR_TOOL[annotation.metadata.toolName];
  const imageId = annotation.metadata.referencedImageId;
  const points = annotation.data.handles.points.map((world) =>
    Array.from(csUtils.worldToImageCoords(imageId, world)),
  );
  const stats = statsFor(annotation) ?? {};
  const measurement = {
    uid: annotation.annotationUID,
    type,
    viewport: viewportIndex,
    slice_index: imageIds.indexOf(imageId),
    points,
    mean: null,
    sd: null,
    pixel_count: null,
    area_mm2: null,
    length_mm: null,
  };
  if (type === 'length') {
    measurement.length_mm = stats.unit === MM ? finiteOrNull(stats.length) : null;
  } else {
    measurement.mean = finiteOrNull(stats.mean);
    measurement.sd = finiteOrNull(stats.stdDev);
    measurement.area_mm2 = stats.areaUnit === MM2 ? finiteOrNull(stats.area) : null;
    const count = stats.statsArray?.find?.((s) => s.name === 'count')?.value;
    measurement.pixel_count = finiteOrNull(count);
  }
  return measurement;
}

/** Checks a measurement given to loadMeasurements and returns its image-coordinate points. */
export function validateMeasurement(m, index, sliceCount) {
  const where = `ReconViewer.loadMeasurements: item ${index}`;
  if (!m || typeof m !== 'object') throw new TypeError(`${where} is not an object`);
  if (!(m.type in TOOL_FOR_TYPE)) {
    throw new TypeError(`${where}: type must be one of ${Object.keys(TOOL_FOR_TYPE).join(', ')}`);
  }
  if (!Number.isInteger(m.slice_index) || m.slice_index < 0 || m.slice_index >= sliceCount) {
    throw new RangeError(`${where}: slice_index ${m.slice_index} is outside 0..${sliceCount - 1}`);
  }
  const points = m.points;
  const ok =
    Array.isArray(points) &&
    points.every(
      (p) => Array.isArray(p) && p.length === 2 && p.every((v) => Number.isFinite(v)),
    );
  if (!ok) throw new TypeError(`${where}: points must be a list of [x, y] numbers`);
  const expected = { ellipse: [4], rectangle: [2, 4], length: [2] }[m.type];
  if (!expected.includes(points.length)) {
    throw new RangeError(`${where}: a ${m.type} needs ${expected.join(' or ')} points`);
  }
  if (m.type === 'rectangle' && points.length === 2) {
    const [[x0, y0], [x1, y1]] = points;
    const [left, right] = [Math.min(x0, x1), Math.max(x0, x1)];
    const [top, bottom] = [Math.min(y0, y1), Math.max(y0, y1)];
    return [
      [left, top],
      [right, top],
      [left, bottom],
      [right, bottom],
    ];
  }
  return points.map((p) => [p[0], p[1]]);
}

/** A cornerstone annotation object for a validated measurement (world-coordinate handles). */
export function measurementToAnnotation(m, imagePoints, imageId, frameOfReferenceUID) {
  const plane = metaData.get('imagePlaneModule', imageId);
  if (!plane) throw new Error(`ReconViewer: image ${imageId} has no geometry (not loaded)`);
  const row = plane.rowCosines;
  const col = plane.columnCosines;
  const normal = [
    row[1] * col[2] - row[2] * col[1],
    row[2] * col[0] - row[0] * col[2],
    row[0] * col[1] - row[1] * col[0],
  ];
  return {
    annotationUID: typeof m.uid === 'string' && m.uid ? m.uid : csUtils.uuidv4(),
    highlighted: false,
    autoGenerated: false,
    invalidated: true,
    isLocked: false,
    isVisible: true,
    metadata: {
      toolName: TOOL_FOR_TYPE[m.type],
      viewPlaneNormal: normal,
      viewUp: [-col[0], -col[1], -col[2]],
      FrameOfReferenceUID: frameOfReferenceUID,
      referencedImageId: imageId,
    },
    data: {
      handles: {
        points: imagePoints.map((p) => csUtils.imageToWorldCoords(imageId, p)),
        activeHandleIndex: null,
        textBox: {
          hasMoved: false,
          worldPosition: [0, 0, 0],
          worldBoundingBox: {
            topLeft: [0, 0, 0],
            topRight: [0, 0, 0],
            bottomLeft: [0, 0, 0],
            bottomRight: [0, 0, 0],
          },
        },
      },
      label: '',
      cachedStats: {},
    },
  };
}
