// Environment variables: a value the addon would silently ignore is an error naming the
// variable, and the reason CUDA is not in use is the true one. Each case runs in a child
// process, since the variables are read once, when the addon loads.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const dist = path.resolve(__dirname, '..', 'dist', 'index.js');

/** backendInfo() in a child process with `env` added: its result, or the error it threw. */
function backendInfoWith(env: Record<string, string>): { info?: { cpu: { threads: number; simd: string }; cuda: { available: boolean; reason?: string } }; error?: string } {
  const script = `
    const fl = require(${JSON.stringify(dist)});
    try { console.log(JSON.stringify({ info: fl.backendInfo() })); }
    catch (e) { console.log(JSON.stringify({ error: e.name + ' [' + e.code + ']: ' + e.message })); }`;
  const base = { ...process.env };
  for (const k of ['FUSEDLOSS_THREADS', 'FUSEDLOSS_SIMD', 'FUSEDLOSS_DEVICE', 'FUSEDLOSS_POISON_OUTPUTS', 'FUSEDLOSS_ADDON']) delete base[k];
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...base, ...env }, encoding: 'utf8' }));
}

describe('environment variables', () => {
  it.each([
    ['FUSEDLOSS_THREADS', 'abc', /^ArgumentError \[ERR_ARG\]: FUSEDLOSS_THREADS: expected an integer in \[1, 1024\] \(the CPU threads\), received "abc"$/],
    ['FUSEDLOSS_THREADS', '0', /FUSEDLOSS_THREADS: expected an integer in \[1, 1024\].*received "0"/],
    ['FUSEDLOSS_THREADS', '2.5', /FUSEDLOSS_THREADS: .*received "2.5"/],
    ['FUSEDLOSS_THREADS', '4096', /FUSEDLOSS_THREADS: .*received "4096"/],
    ['FUSEDLOSS_SIMD', 'avx3', /^ArgumentError \[ERR_ARG\]: FUSEDLOSS_SIMD: expected 'sse2', 'avx2' or 'avx512', received "avx3"$/],
    ['FUSEDLOSS_DEVICE', 'gpu', /^ArgumentError \[ERR_ARG\]: FUSEDLOSS_DEVICE: expected 'auto', 'cpu' or 'cuda', received "gpu"$/],
    ['FUSEDLOSS_POISON_OUTPUTS', 'yes', /FUSEDLOSS_POISON_OUTPUTS: expected '0' or '1', received "yes"/],
  ])('%s=%s is rejected with a message naming it', (name, value, message) => {
    expect(backendInfoWith({ [name]: value }).error).toMatch(message);
  });

  it('good values are taken, and an empty value counts as unset', () => {
    const { info } = backendInfoWith({ FUSEDLOSS_THREADS: '1', FUSEDLOSS_SIMD: 'sse2', FUSEDLOSS_DEVICE: '' });
    expect(info?.cpu).toMatchObject({ threads: 1, simd: 'sse2' });
  });

  it('FUSEDLOSS_DEVICE=cpu: CUDA is unavailable because it was asked for', () => {
    expect(backendInfoWith({ FUSEDLOSS_DEVICE: 'cpu' }).info?.cuda).toMatchObject({ available: false, reason: 'FUSEDLOSS_DEVICE=cpu' });
  });

  it('the reason CUDA is not in use is what happened, not a guess about nvcc', () => {
    const { info } = backendInfoWith({});
    if (info?.cuda.available) return;
    // Whatever this tree's install did (no record, OFF, no nvcc, a failed build, or a CUDA addon
    // that sees no GPU), the reason says which.
    expect(info?.cuda.reason).toMatch(/^the CUDA addon (was not built|sees no GPU|failed to load)/);
  });
});
