// Builds the ReconTrial DICOM viewer into ../static/viewer/ (served by Django as /static/viewer/).
//
// Outputs (all same-origin, no CDN):
//   viewer.js                   ES module: the viewer and the public ReconViewer API
//   viewer.css                  viewer styles
//   decodeImageFrameWorker.js   dicom-image-loader's decode web worker (a module worker; the
//                               loader creates it with new URL('./decodeImageFrameWorker.js',
//                               import.meta.url), i.e. next to viewer.js)
//   codecs/*.wasm               WebAssembly decoders for compressed transfer syntaxes (JPEG-LS,
//                               JPEG 2000, HTJ2K, JPEG baseline, JPEG XL); the viewer points the
//                               loader's wasmBasePath here
//
// Usage: node build.mjs [--dev]   (--dev: no minification, inline source maps)

import { build } from 'esbuild';
import { copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, '..', 'static', 'viewer');
const dev = process.argv.includes('--dev');
const require = createRequire(import.meta.url);

// Emscripten codec glue contains a Node branch (require("fs") etc.) that never runs in a
// browser or worker; keep those requires unresolved instead of failing the build.
const nodeBuiltins = ['fs', 'path', 'crypto', 'module', 'url', 'worker_threads', 'perf_hooks'];

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16.4', 'edge110'],
  minify: !dev,
  sourcemap: dev ? 'inline' : false,
  legalComments: 'linked',
  external: nodeBuiltins,
  alias: { xmlbuilder2: path.join(here, 'src', 'stubs', 'xmlbuilder2.js') },
  define: { 'process.env.NODE_ENV': dev ? '"development"' : '"production"' },
  logLevel: 'warning',
};

const wasmCodecs = [
  ['@cornerstonejs/codec-charls/decodewasm', 'charlswasm_decode.wasm'],
  ['@cornerstonejs/codec-openjpeg/decodewasm', 'openjpegwasm_decode.wasm'],
  ['@cornerstonejs/codec-libjxl/decodewasm', 'jpegxlwasm_decode.wasm'],
  ['@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm', 'libjpegturbowasm_decode.wasm'],
  ['@cornerstonejs/codec-openjph/wasm', 'openjphjs.wasm'],
];

function resolveFromLoader(specifier) {
  const loaderEntry = require.resolve('@cornerstonejs/dicom-image-loader');
  return require.resolve(specifier, { paths: [path.dirname(loaderEntry)] });
}

async function main() {
  await rm(outdir, { recursive: true, force: true });
  await mkdir(path.join(outdir, 'codecs'), { recursive: true });

  const main = await build({
    ...common,
    metafile: true,
    entryPoints: { viewer: path.join(here, 'src', 'viewer.js') },
    outdir,
  });
  const worker = await build({
    ...common,
    metafile: true,
    entryPoints: {
      decodeImageFrameWorker: path.join(
        path.dirname(require.resolve('@cornerstonejs/dicom-image-loader')),
        'decodeImageFrameWorker.js',
      ),
    },
    outdir,
  });
  await build({
    ...common,
    entryPoints: { viewer: path.join(here, 'src', 'viewer.css') },
    outdir,
    loader: { '.css': 'css' },
  });

  for (const [specifier, name] of wasmCodecs) {
    await copyFile(resolveFromLoader(specifier), path.join(outdir, 'codecs', name));
  }
  await writeThirdPartyLicenses([main.metafile, worker.metafile]);

  const files = await listFiles(outdir);
  let total = 0;
  const manifest = {};
  for (const file of files) {
    const { size } = await stat(path.join(outdir, file));
    manifest[file] = size;
    total += size;
  }
  await writeFile(
    path.join(outdir, 'build-info.json'),
    JSON.stringify({ dev, files: manifest, total_bytes: total }, null, 2) + '\n',
  );
  const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
  for (const [file, size] of Object.entries(manifest)) console.log(`  ${file}  ${kib(size)}`);
  console.log(`viewer bundle written to ${outdir} (${kib(total)} in total)`);
}

// Licence texts of every npm package that ends up in the bundle (the wasm codecs come from
// the codec packages, which are bundled too), for redistribution with the static files.
async function writeThirdPartyLicenses(metafiles) {
  const packages = new Map();
  for (const metafile of metafiles) {
    for (const input of Object.keys(metafile.inputs)) {
      const match = input.match(/^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//);
      if (match) packages.set(match[1], true);
    }
  }
  const sections = [];
  for (const dir of [...packages.keys()].sort()) {
    const pkg = JSON.parse(await readFile(path.join(here, dir, 'package.json'), 'utf8'));
    const names = await readdir(path.join(here, dir));
    const licenseFile = names.find((n) => /^(licen[cs]e|copying)(\.|$)/i.test(n));
    const text = licenseFile
      ? (await readFile(path.join(here, dir, licenseFile), 'utf8')).trim()
      : `(no licence file shipped; package.json declares ${pkg.license ?? 'no licence'})`;
    sections.push(`${pkg.name} ${pkg.version} (${pkg.license ?? 'unknown'})\n\n${text}`);
  }
  const rule = `\n\n${'='.repeat(78)}\n\n`;
  await writeFile(
    path.join(outdir, 'THIRD-PARTY-LICENSES.txt'),
    `Third-party software in the ReconTrial viewer bundle\n${rule}${sections.join(rule)}\n`,
  );
  return sections.length;
}

async function listFiles(dir, prefix = '') {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(path.join(dir, entry.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
