// A hash of everything the CPU addon is compiled from, to tell a stale prebuild.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

function files(dir) {
  return readdirSync(dir)
    .flatMap((f) => {
      const p = path.join(dir, f);
      return statSync(p).isDirectory() ? files(p) : [p];
    })
    .sort();
}

export function nativeSourcesHash(root) {
  const h = createHash('sha256');
  for (const f of [...files(path.join(root, 'native')), ...files(path.join(root, 'napi')), path.join(root, 'binding.gyp')]) {
    h.update(path.relative(root, f).split(path.sep).join('/'));
    h.update(readFileSync(f));
  }
  return h.digest('hex');
}
