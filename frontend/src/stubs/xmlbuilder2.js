// Build-time replacement for the xmlbuilder2 package.
//
// vtk.js (pulled in by @cornerstonejs/core) imports xmlbuilder2 only for its VTK XML file
// readers/writers (surface meshes), which this viewer never uses. The real package depends on
// Node built-ins (events, url) that do not exist in browsers, so the bundle aliases it here.
export function create() {
  throw new Error('VTK XML input/output is not available in the ReconTrial viewer bundle');
}
