#!/usr/bin/env node
// npm run test:pack: what a new user meets. Packs this tree with `npm pack`, checks what the
// tarball holds, installs it into a fresh project (dependencies from the npm registry), checks
// that fusedloss/tfjs without @tensorflow/tfjs says how to install it, installs
// @tensorflow/tfjs, and runs every README example (scripts/lib/readme-snippets.mjs) there, plus
// `npx fusedloss-demo --help`. Install-time variables (FUSEDLOSS_CUDA, ...) pass through, so
// `FUSEDLOSS_CUDA=ON npm run test:pack` checks the CUDA build from the tarball too.
// --keep leaves the project in place (its path is printed).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSnippets } from './lib/readme-snippets.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const keep = process.argv.includes('--keep');
const dir = mkdtempSync(path.join(os.tmpdir(), 'fusedloss-pack-'));
const project = path.join(dir, 'project');
let failures = 0;
const log = (msg) => console.log(`pack-test: ${msg}`);
const check = (ok, what) => {
  log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
};
const npm = (args, cwd, opts = {}) => {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`npm ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

try {
  // The TypeScript as it is now (npm pack ships dist/ as it lies).
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join('demo', 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
  const tarball = path.join(dir, npm(['pack', '--silent', '--pack-destination', dir], root).trim().split('\n').pop());
  const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
  log(`${path.basename(tarball)}: ${files.length} files, ${(readFileSync(tarball).length / 1e3).toFixed(0)} kB`);
  check(files.includes('LICENSE'), 'the tarball has LICENSE');
  check(files.some((f) => f.startsWith('prebuilds/') && f.endsWith('.node')), 'the tarball has the prebuilt CPU binary');
  check(!files.some((f) => f.endsWith('.map')), 'no source maps (they would point at lib/*.ts, which is not shipped)');
  check(!files.some((f) => /^(lib|test|bench|demo|\.ci)\//.test(f) || f.startsWith('scripts/') && f !== 'scripts/install.mjs'), 'no sources or tools a dependent does not use');
  const links = new Set([...readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/\]\((docs\/[^)#]+)\)/g)].map((m) => m[1]));
  for (const link of links) check(files.includes(link), `README link ${link} resolves in the package`);

  execFileSync('mkdir', ['-p', project]);
  npm(['init', '-y'], project);
  const t0 = Date.now();
  const install = npm(['install', '--no-audit', '--no-fund', '--foreground-scripts', tarball], project);
  log(`npm install <tarball>: ${((Date.now() - t0) / 1e3).toFixed(1)} s\n${install.trim().split('\n').filter((l) => l.includes('fusedloss')).map((l) => `    ${l}`).join('\n')}`);

  const node = (code) => spawnSync(process.execPath, ['-e', code], { cwd: project, encoding: 'utf8' });
  const info = node("const i = require('fusedloss').backendInfo(); console.log(JSON.stringify({ cpu: i.cpu, cuda: i.cuda.available, reason: i.cuda.reason, file: i.loader.file }))");
  check(info.status === 0, `fusedloss loads: ${info.stdout.trim() || info.stderr}`);
  const noTf = node("try { require('fusedloss/tfjs'); console.log('loaded') } catch (e) { console.log(e.code + ': ' + e.message) }");
  check(/^ERR_PEER_MISSING: .*npm install @tensorflow\/tfjs/.test(noTf.stdout), `fusedloss/tfjs without @tensorflow/tfjs: ${noTf.stdout.trim()}`);

  // The tfjs this repository tests with.
  const tfVersion = JSON.parse(readFileSync(path.join(root, 'node_modules', '@tensorflow', 'tfjs', 'package.json'), 'utf8')).version;
  npm(['install', '--no-audit', '--no-fund', `@tensorflow/tfjs@${tfVersion}`], project);
  for (const s of writeSnippets(project)) {
    const t = Date.now();
    const r = spawnSync(process.execPath, [s.js], { cwd: project, encoding: 'utf8' });
    check(r.status === 0, `${s.name} runs (${((Date.now() - t) / 1e3).toFixed(1)} s)${r.status === 0 ? '' : `:\n${r.stderr}`}`);
  }
  const demo = spawnSync('npx', ['--no-install', 'fusedloss-demo', '--help'], { cwd: project, encoding: 'utf8' });
  check(demo.status === 0 && demo.stdout.includes('--loss'), 'npx fusedloss-demo --help');
  check(existsSync(path.join(project, 'node_modules', 'fusedloss', 'build-cuda', 'install.json')), 'the install script recorded what became of the CUDA addon');
} catch (e) {
  failures++;
  console.error(e.message);
} finally {
  if (keep) log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
