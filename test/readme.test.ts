// Every ```ts block of the README is a complete program: here each one type-checks under strict
// TypeScript and runs, in a project that depends on this tree (dist/ as built) the way a user's
// project depends on the package. scripts/pack-test.mjs does the same against the packed tarball.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeSnippets } from '../scripts/lib/readme-snippets.mjs';

const root = path.resolve(__dirname, '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'fusedloss-readme-'));
mkdirSync(path.join(dir, 'node_modules'));
symlinkSync(root, path.join(dir, 'node_modules', 'fusedloss'));
for (const dep of ['@tensorflow', '@types']) symlinkSync(path.join(root, 'node_modules', dep), path.join(dir, 'node_modules', dep));
const snippets = writeSnippets(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('README examples', () => {
  it('there are examples for every section that has code', () => {
    expect(snippets.length).toBeGreaterThanOrEqual(7);
  });

  it('type-check under strict TypeScript', () => {
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'esnext', moduleResolution: 'bundler', target: 'ES2022', lib: ['ES2022', 'ESNext.Disposable', 'DOM'], strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
        files: snippets.map((s) => s.ts),
      }),
    );
    let out = '';
    try {
      execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' });
    } catch (e) {
      out = (e as { stdout: string }).stdout;
    }
    expect(out).toBe('');
  });

  it.each(snippets.map((s) => [s.name, s] as const))('%s runs', async (_, s) => {
    // The environment a user has: no test-only settings.
    const env = { ...process.env };
    delete env.FUSEDLOSS_POISON_OUTPUTS;
    const stderr = await new Promise<string>((resolve) => {
      execFile(process.execPath, [s.js], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 }, (err, _stdout, stderr) => resolve(err ? `${err.message}\n${stderr}` : ''));
    });
    expect(stderr, `${s.name} failed`).toBe('');
  });
});
