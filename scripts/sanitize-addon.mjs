#!/usr/bin/env node
// The addon under AddressSanitizer + UndefinedBehaviorSanitizer, driven through node:
//
//   node scripts/sanitize-addon.mjs [vitest files...]
//
// 1. Builds build-asan/Release/fusedloss.node with cmake-js and -DFUSEDLOSS_SANITIZE=ON (CPU).
// 2. Runs the TypeScript suite (or the files named) on it: node with LD_PRELOAD of gcc's
//    libasan (node itself is not instrumented; the runtime must load first), and
//    FUSEDLOSS_ADDON pointing the loader at the sanitized binary. A memory error or undefined
//    behaviour aborts the test process, which fails the run.
// 3. LeakSanitizer: test/leak/lsan-main.ts (run with vite-node, so that the process exits
//    normally and LSan's at-exit check runs) makes 12,000 calls of every op of
//    test/ops-under-test.ts (sync, async, failing) and runs two worker_threads through their
//    whole life. Any leak whose stack passes through the addon fails the run; leaks of node
//    itself, if any, are counted and shown apart.
//
// Commands, equivalently, by hand:
//   npx cmake-js compile --out build-asan --CDFUSEDLOSS_SANITIZE=ON
//   LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 FUSEDLOSS_SANITIZED=1 \
//     FUSEDLOSS_ADDON=$PWD/build-asan/Release/fusedloss.node npx vitest run
//   LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=1 \
//     FUSEDLOSS_ADDON=$PWD/build-asan/Release/fusedloss.node npx vite-node test/leak/lsan-main.ts 12000
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireSanitizers } from './lib/sanitizer-support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = process.argv.slice(2);
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const log = (msg) => console.log(`sanitize-addon: ${msg}`);

function run(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status ?? 1;
}

const libasan = requireSanitizers('sanitize-addon');

// 1. Build (offline, against the headers beside this node, as scripts/install.mjs does).
if (!process.env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) process.env.npm_config_nodedir = prefix;
}
log('building build-asan/ (ASan + UBSan)');
const jobs = String(Math.min(8, os.availableParallelism()));
if (run(process.execPath, [bin('cmake-js'), 'compile', '--out', 'build-asan', '--CDFUSEDLOSS_SANITIZE=ON', '--CDFUSEDLOSS_CUDA=OFF', '--parallel', jobs]) !== 0) process.exit(1);
const addon = path.join(root, 'build-asan', 'Release', 'fusedloss.node');
const env = {
  LD_PRELOAD: libasan,
  FUSEDLOSS_ADDON: addon,
  FUSEDLOSS_SANITIZED: '1',
  UBSAN_OPTIONS: 'print_stacktrace=1',
};

// 2. The TypeScript suite on the sanitized addon.
log(`running ${files.length ? files.join(' ') : 'the TypeScript suite'} on ${path.relative(root, addon)}`);
const t0 = performance.now();
if (run(bin('vitest'), ['run', ...files], { ...env, ASAN_OPTIONS: 'detect_leaks=0' }) !== 0) {
  console.error('sanitize-addon: the suite failed under ASan/UBSan');
  process.exit(1);
}
log(`suite passed under ASan/UBSan in ${((performance.now() - t0) / 1000).toFixed(0)} s`);

// 3. LeakSanitizer over the long loop.
const logDir = path.join(root, 'build-asan', 'lsan');
rmSync(logDir, { recursive: true, force: true });
mkdirSync(logDir, { recursive: true });
const status = run(bin('vite-node'), [path.join('test', 'leak', 'lsan-main.ts'), '12000'], {
  ...env,
  ASAN_OPTIONS: `detect_leaks=1:log_path=${path.join(logDir, 'lsan')}`,
});
const reports = readdirSync(logDir).map((f) => readFileSync(path.join(logDir, f), 'utf8'));
// A report is a list of blocks "Direct leak of N byte(s) ... allocated from:" + a stack.
const leaks = reports.flatMap((r) => r.split(/\n(?=(?:Direct|Indirect) leak of )/).filter((b) => /^(Direct|Indirect) leak of/.test(b)));
const ours = leaks.filter((b) => /fusedloss\.node|fl::|napi\//.test(b));
const bytes = (bs) => bs.reduce((s, b) => s + Number(/leak of (\d+) byte/.exec(b)[1]), 0);
if (ours.length) {
  console.error(`sanitize-addon: LeakSanitizer found ${bytes(ours)} bytes leaked through the addon:\n${ours.join('\n')}`);
  process.exit(1);
}
log(`LeakSanitizer: 0 bytes leaked through the addon; ${leaks.length ? `${bytes(leaks)} bytes in ${leaks.length} leaks of node itself (not ours)` : 'no leaks at all'}`);
if (status !== 0 && !leaks.length) {
  console.error(`sanitize-addon: the leak loop failed (exit ${status})`);
  process.exit(1);
}
