// The prebuilt CPU binary (prebuilds/<platform>-<arch>/) is what loads for a user who installs
// fusedloss as a dependency: npm 11 warns about install scripts and pnpm skips them. So it must
// exist for linux-x64, be built from the sources in this tree (npm run build:prebuilt stamps their hash
// into prebuilds/SOURCES.sha256), and compute the same results as the local build.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeSourcesHash } from '../scripts/lib/sources-hash.mjs';

const root = path.resolve(__dirname, '..');
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);

describe.skipIf(process.platform !== 'linux' || process.arch !== 'x64')('prebuilt CPU binary', () => {
  it('exists for linux-x64 and was built from these sources (else: npm run build:prebuilt)', () => {
    expect(existsSync(dir), `${dir} is missing: run npm run build:prebuilt`).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.node')).length).toBe(1);
    const stamped = readFileSync(path.join(root, 'prebuilds', 'SOURCES.sha256'), 'utf8').trim();
    expect(stamped, 'native sources changed since the prebuild: run npm run build:prebuilt').toBe(nativeSourcesHash(root));
  });

  it('loads without a local build and computes what the local build computes', () => {
    const file = path.join(dir, readdirSync(dir).find((f) => f.endsWith('.node'))!);
    // A child process, as a dependency user would load it: FUSEDLOSS_ADDON picks the binary.
    const script = `
      const fl = require(${JSON.stringify(path.join(root, 'dist', 'index.js'))});
      const x = Float32Array.from({ length: 7 * 1003 }, (_, i) => Math.sin(i * 0.37) * 4);
      const y = Int32Array.from({ length: 7 }, (_, i) => (i * 131) % 1003);
      const r = fl.softmaxCrossEntropy(fl.tensor(x, [7, 1003]), y, { labelSmoothing: 0.1 });
      const g = r.grad.data;
      console.log(JSON.stringify({ file: fl.backendInfo().loader.file, loss: r.loss, g: [g[0], g[5000], g[7020]] }));`;
    const run = (env: Record<string, string>) => JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, FUSEDLOSS_DEVICE: 'cpu', ...env } }).toString());
    const pre = run({ FUSEDLOSS_ADDON: file });
    expect(pre.file).toBe(file);
    const local = run({});
    expect(pre.loss).toBe(local.loss);
    expect(pre.g).toEqual(local.g);
  });
});
