#!/usr/bin/env node
// `npm install` for fusedloss: build what this machine can build.
//
//   1. The TypeScript API (dist/), when its sources and the compiler are here (a git clone).
//   2. The CPU addon (build/Release/fusedloss.node) with cmake-js. A user who installs the
//      published package gets a prebuilt CPU binary from prebuilds/; when it loads, nothing is
//      compiled (unless --force).
//   3. The CUDA addon (build-cuda/Release/fusedloss_cuda.node), when nvcc is found or
//      FUSEDLOSS_CUDA=ON, in a git clone and in an installed package alike: it is built with
//      plain CMake (not cmake-js, a devDependency), against the Node headers beside this node
//      binary. It lives apart from the CPU binary because node-gyp-build loads the first .node
//      it finds. A CUDA build failure is a warning: the CPU build still stands.
//      FUSEDLOSS_CUDA=OFF skips it; FUSEDLOSS_CUDA_ARCHS overrides the GPU architectures.
//      Why it was not built is recorded in build-cuda/install.json, which the loader reports
//      (backendInfo().cuda.reason, FUSEDLOSS_DEVICE=cuda's error).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
const cudaWanted = (process.env.FUSEDLOSS_CUDA || 'auto').toUpperCase();
const cudaDir = path.join(root, 'build-cuda');
function recordCuda(built, reason) {
  mkdirSync(cudaDir, { recursive: true });
  writeFileSync(path.join(cudaDir, 'install.json'), JSON.stringify({ built, reason }) + '\n');
  // Asked for with FUSEDLOSS_CUDA=ON, its absence is a warning; found missing by auto, a note.
  if (!built) (cudaWanted === 'ON' ? console.warn : console.log)(`fusedloss: no CUDA addon: ${reason}`);
}
function findTool(name, fallback) {
  try {
    return execFileSync('sh', ['-c', `command -v ${name} || ls ${fallback}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n')[0];
  } catch {
    return null;
  }
}
// The Node headers to build against: npm's nodedir, else those installed beside this node binary.
function nodeIncludeDir() {
  const dir = path.join(process.env.npm_config_nodedir || path.resolve(path.dirname(process.execPath), '..'), 'include', 'node');
  return existsSync(path.join(dir, 'node_api.h')) ? dir : null;
}
function buildCuda() {
  if (cudaWanted === 'OFF') return recordCuda(false, 'FUSEDLOSS_CUDA=OFF at install time');
  if (cudaWanted !== 'ON' && cudaWanted !== 'AUTO') return recordCuda(false, `FUSEDLOSS_CUDA=${process.env.FUSEDLOSS_CUDA} at install time (expected ON, OFF or auto)`);
  const nvcc = findTool('nvcc', '/usr/local/cuda/bin/nvcc');
  if (!nvcc) return recordCuda(false, 'nvcc was not found at install time (on PATH or in /usr/local/cuda/bin)');
  const cmake = findTool('cmake', '/usr/local/bin/cmake');
  if (!cmake) return recordCuda(false, `nvcc was found (${nvcc}), but cmake, needed to build the CUDA addon, was not`);
  const include = nodeIncludeDir();
  if (!include) return recordCuda(false, `nvcc was found (${nvcc}), but the Node headers (include/node/node_api.h) were not: set npm_config_nodedir`);
  // FUSEDLOSS_CUDA_ARCHS=90-real (say) builds one architecture: faster while developing.
  const archs = process.env.FUSEDLOSS_CUDA_ARCHS || '80-real;90-real;90-virtual';
  log(`nvcc found (${nvcc}): building the CUDA addon for ${archs} (minutes; FUSEDLOSS_CUDA=OFF skips it)`);
  // Ninja when it is here, as cmake-js picks it: a build directory keeps its first generator.
  // The -D values are those cmake-js would set (CMakeLists.txt builds the addon when
  // CMAKE_JS_INC is set; on Linux an addon needs no import library). They override the cache, so
  // a changed FUSEDLOSS_CUDA_ARCHS takes effect in an existing build directory.
  const generator = findTool('ninja', '/usr/bin/ninja') ? ['-G', 'Ninja'] : [];
  // A cache made with another nvcc makes CMake drop it and configure again without the -D
  // values below (a CPU-only build): start from a fresh cache instead.
  const cache = path.join(cudaDir, 'CMakeCache.txt');
  if (existsSync(cache) && !readFileSync(cache, 'utf8').split('\n').some((l) => /^CMAKE_CUDA_COMPILER:\w+=/.test(l) && l.split('=')[1] === nvcc)) {
    rmSync(cache);
    rmSync(path.join(cudaDir, 'CMakeFiles'), { recursive: true, force: true });
  }
  // The addon is removed first, so that success means this build made it.
  const addon = path.join(cudaDir, 'Release', 'fusedloss_cuda.node');
  rmSync(addon, { force: true });
  const configured = run(cmake, [
    '-S', root, '-B', cudaDir, ...generator,
    '-DCMAKE_BUILD_TYPE=Release',
    '-DFUSEDLOSS_CUDA=ON',
    `-DCMAKE_CUDA_COMPILER=${nvcc}`,
    `-DCMAKE_CUDA_ARCHITECTURES=${archs}`,
    `-DCMAKE_JS_INC=${include}`,
    `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${path.join(cudaDir, 'Release')}`,
  ]);
  const built = configured && run(cmake, ['--build', cudaDir, '--parallel', String(Math.min(8, os.availableParallelism()))]) && existsSync(addon);
  if (!built) {
    console.warn('fusedloss: WARNING: the CUDA build failed (its errors are above); the CPU build is unaffected.');
    return recordCuda(false, `the CUDA build failed at install time (nvcc ${nvcc}); its errors are in the npm install log`);
  }
  recordCuda(true, null);
}
buildCuda();
