// The README's TypeScript examples as programs: each ```ts block is a complete program, run by
// test/readme.test.ts against this tree and by scripts/pack-test.mjs against the packed tarball,
// so that the README cannot drift from the API.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(root, 'package.json'));

/** The ```ts blocks of README.md: { name: 'README.md:<line>', source }. */
export function readmeSnippets() {
  const lines = readFileSync(path.join(root, 'README.md'), 'utf8').split('\n');
  const snippets = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```ts') continue;
    const start = i + 1;
    while (++i < lines.length && lines[i].trim() !== '```');
    snippets.push({ name: `README.md:${start}`, source: lines.slice(start, i).join('\n') + '\n' });
  }
  return snippets;
}

/**
 * Writes each snippet into `dir` as TypeScript (`readme-<line>.ts`, for tsc) and as the ES
 * module node runs (`readme-<line>.mjs`: top-level await, as in the README). Returns the
 * snippets with their file names.
 */
export function writeSnippets(dir) {
  const ts = require('typescript');
  return readmeSnippets().map((s) => {
    const base = `readme-${s.name.split(':')[1]}`;
    writeFileSync(path.join(dir, `${base}.ts`), s.source);
    const js = ts.transpileModule(s.source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    writeFileSync(path.join(dir, `${base}.mjs`), js);
    return { ...s, ts: `${base}.ts`, js: `${base}.mjs` };
  });
}
