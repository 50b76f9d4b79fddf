#!/usr/bin/env node
// Builds and runs the native unit tests (test/native/) with CMake and ctest.
//   FUSEDLOSS_SANITIZE=1  builds them with AddressSanitizer + UBSan (in build-sanitize/).
import { spawnSync } from 'node:child_process';
import os from 'node:os';

const sanitize = process.env.FUSEDLOSS_SANITIZE === '1';
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
