// The published types as a dependent compiles them (test/types/consumer.ts), under strict
// TypeScript and each module resolution a dependent may use: node10 (package.json
// typesVersions) and node16 (package.json exports). skipLibCheck, as tfjs's own .d.ts need it.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'fusedloss-types-'));
// A project whose node_modules holds this package (dist/ as built) and its peers.
mkdirSync(path.join(dir, 'node_modules'));
symlinkSync(root, path.join(dir, 'node_modules', 'fusedloss'));
symlinkSync(path.join(root, 'node_modules', '@tensorflow'), path.join(dir, 'node_modules', '@tensorflow'));
symlinkSync(path.join(root, 'node_modules', '@types'), path.join(dir, 'node_modules', '@types'));
// Copied in: module resolution starts from the importing file's folder.
copyFileSync(path.join(root, 'test', 'types', 'consumer.ts'), path.join(dir, 'consumer.ts'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function compile(moduleOpts: { module: string; moduleResolution: string }): string {
  const tsconfig = path.join(dir, `tsconfig.${moduleOpts.moduleResolution}.json`);
  writeFileSync(
    tsconfig,
    JSON.stringify({
      compilerOptions: { ...moduleOpts, target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], lib: ['ES2022', 'ESNext.Disposable'] },
      files: ['consumer.ts'],
    }),
  );
  try {
    return execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', tsconfig], { cwd: dir, encoding: 'utf8' });
  } catch (e) {
    return (e as { stdout: string }).stdout || String(e);
  }
}

describe('published types under strict TypeScript', () => {
  it('compile with moduleResolution node10', () => {
    expect(compile({ module: 'commonjs', moduleResolution: 'node10' })).toBe('');
  });
  it('compile with moduleResolution node16', () => {
    expect(compile({ module: 'node16', moduleResolution: 'node16' })).toBe('');
  });
});
