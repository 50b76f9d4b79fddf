#!/usr/bin/env node
// Builds and runs the native unit tests (test/native/) with CMake and ctest.
//   --sanitize (or FUSEDLOSS_SANITIZE=1)  builds them with AddressSanitizer + UBSan, LeakSanitizer
//   at exit (in build-sanitize/); skipped with a notice where the toolchain lacks them (not on CI).
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { requireSanitizers } from './lib/sanitizer-support.mjs';

const sanitize = process.env.FUSEDLOSS_SANITIZE === '1' || process.argv.includes('--sanitize');
if (sanitize) requireSanitizers('native tests under ASan/UBSan');
const dir = sanitize ? 'build-sanitize' : 'build-tests';
const jobs = String(Math.min(8, os.availableParallelism()));
const steps = [
  ['cmake', ['-S', '.', '-B', dir, '-G', 'Ninja', '-DFUSEDLOSS_TESTS=ON', `-DFUSEDLOSS_SANITIZE=${sanitize ? 'ON' : 'OFF'}`,
    `-DCMAKE_BUILD_TYPE=${sanitize ? 'RelWithDebInfo' : 'Release'}`]],
  ['cmake', ['--build', dir, '--parallel', jobs]],
  ['ctest', ['--test-dir', dir, '--output-on-failure', '--parallel', jobs]],
];
for (const [cmd, args] of steps) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
