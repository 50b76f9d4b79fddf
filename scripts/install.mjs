#!/usr/bin/env node
// `npm install` for fusedloss: build what this machine can build.
//
//   1. The TypeScript API (dist/), when its sources and the compiler are here (a git clone).
//   2. The CPU addon (build/Release/fusedloss.node) with cmake-js. A user who installs the
//      published package gets a prebuilt CPU binary from prebuilds/; when it loads, nothing is
//      compiled (unless --force).
//   3. The CUDA addon (build-cuda/Release/fusedloss_cuda.node), when nvcc is found or
//      FUSEDLOSS_CUDA=ON. It lives apart from the CPU binary because node-gyp-build loads the
//      first .node it finds. A CUDA build failure is a warning: the CPU build still stands.
//      FUSEDLOSS_CUDA=OFF skips it; FUSEDLOSS_CUDA_ARCHS overrides the GPU architectures.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const force = process.argv.includes('--force');
const log = (msg) => console.log(`fusedloss: ${msg}`);

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  return r.status === 0;
}

function resolveBin(pkg, bin) {
  try {
    const pj = require.resolve(`${pkg}/package.json`);
    const meta = require(pj);
    const rel = typeof meta.bin === 'string' ? meta.bin : meta.bin[bin];
    return path.join(path.dirname(pj), rel);
  } catch {
    return null;
  }
}

// 1. TypeScript
const tsc = resolveBin('typescript', 'tsc');
if (existsSync(path.join(root, 'lib', 'index.ts')) && tsc) {
  log('compiling TypeScript');
  if (!run(process.execPath, [tsc, '-p', 'tsconfig.json'])) process.exit(1);
  // The demo (npm run demo, bin fusedloss-demo) imports the package by its own name, so it
  // compiles after the library.
  if (existsSync(path.join(root, 'demo', 'tsconfig.json')) && !run(process.execPath, [tsc, '-p', path.join('demo', 'tsconfig.json')])) process.exit(1);
}

// 2. CPU addon
// Build offline against the Node headers installed beside this node binary, unless npm names a
// nodedir already: cmake-js reads npm_config_nodedir and would otherwise download headers.
if (!process.env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) process.env.npm_config_nodedir = prefix;
}
const cmakeJs = resolveBin('cmake-js', 'cmake-js');
// The prebuilt binary node-gyp-build would pick, if it really loads here (a prebuild made on a
// newer glibc, say, does not): then nothing needs compiling.
const prebuildLoads = () => {
  try {
    const found = require('node-gyp-build').path(root);
    if (!found.includes(`${path.sep}prebuilds${path.sep}`)) return null;
    require(found);
    return found;
  } catch {
    return null;
  }
};
const cmakeArgs = (out, extra) => {
  const args = ['compile', '--out', out, '--parallel', String(Math.min(8, os.availableParallelism()))];
  return args.concat(extra);
};

const prebuilt = !force && !cmakeJs ? prebuildLoads() : null;
if (prebuilt) {
  log(`using the prebuilt binary ${path.relative(root, prebuilt)}`);
} else if (!cmakeJs) {
  // Installed as a dependency (cmake-js is a devDependency) where no prebuild loads: build the
  // CPU addon from binding.gyp with the node-gyp that npm runs install scripts with.
  const nodeGyp = process.env.npm_config_node_gyp;
  if (!nodeGyp || !existsSync(nodeGyp)) {
    console.error('fusedloss: no prebuilt binary loads on this machine, and neither cmake-js nor node-gyp is available to build one.');
    process.exit(1);
  }
  log('no prebuilt binary loads here: building the CPU addon with node-gyp');
  if (!run(process.execPath, [nodeGyp, 'rebuild'])) {
    console.error('fusedloss: the CPU build (node-gyp) failed.');
    process.exit(1);
  }
} else {
  log('building the CPU addon (cmake-js)');
  if (!run(process.execPath, [cmakeJs, ...cmakeArgs('build', [])])) {
    console.error('fusedloss: the CPU build failed.');
    process.exit(1);
  }
}

// 3. CUDA addon
const cudaWanted = (process.env.FUSEDLOSS_CUDA ?? 'auto').toUpperCase();
function findNvcc() {
  try {
    return execFileSync('sh', ['-c', 'command -v nvcc || ls /usr/local/cuda/bin/nvcc'], { encoding: 'utf8' }).trim().split('\n')[0];
  } catch {
    return null;
  }
}
if (cudaWanted !== 'OFF' && cmakeJs) {
  const nvcc = findNvcc();
  if (!nvcc) {
    if (cudaWanted === 'ON') console.warn('fusedloss: FUSEDLOSS_CUDA=ON but nvcc was not found; CPU only.');
    else log('nvcc not found: CPU build only');
  } else {
    log(`nvcc found (${nvcc}): building the CUDA addon`);
    const extra = ['--CDFUSEDLOSS_CUDA=ON', `--CDCMAKE_CUDA_COMPILER=${nvcc}`];
    // FUSEDLOSS_CUDA_ARCHS=90-real (say) builds one architecture: faster while developing.
    // cmake-js only configures a fresh build directory, and CMake caches the architectures: a
    // cache made for other architectures is dropped, so that a later plain build builds all.
    const archs = process.env.FUSEDLOSS_CUDA_ARCHS || '80-real;90-real;90-virtual';
    extra.push(`--CDCMAKE_CUDA_ARCHITECTURES=${archs}`);
    const cache = path.join(root, 'build-cuda', 'CMakeCache.txt');
    if (existsSync(cache) && !readFileSync(cache, 'utf8').includes(`CMAKE_CUDA_ARCHITECTURES:UNINITIALIZED=${archs}\n`)) rmSync(cache);
    const ok = run(process.execPath, [cmakeJs, ...cmakeArgs('build-cuda', extra)]);
    if (!ok) console.warn('fusedloss: WARNING: the CUDA build failed; the CPU build is unaffected.');
  }
}
