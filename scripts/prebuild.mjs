#!/usr/bin/env node
// npm run build:prebuilt: the portable CPU binary in prebuilds/<platform>-<arch>/, which is what loads
// for a user who installs fusedloss as a dependency (npm 11 and pnpm may skip install scripts).
// prebuildify drives node-gyp (binding.gyp: the same sources as CMake, no -march, so the one
// binary runs on any x86-64 and dispatches SIMD at run time). node-gyp builds in build/, the
// cmake-js build directory, so the cmake-js build is redone afterwards.
// It also writes prebuilds/SOURCES.sha256, a hash of the native sources the binary was built
// from; test/prebuild.test.ts fails when the sources have changed since.
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeSourcesHash } from './lib/sources-hash.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
if (!process.env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  process.env.npm_config_nodedir = prefix;
}
rmSync(path.join(root, 'build'), { recursive: true, force: true });
run(process.execPath, [path.join(root, 'node_modules', 'prebuildify', 'bin.js'), '--napi', '--strip', '--target', `node@${process.versions.node}`]);
writeFileSync(path.join(root, 'prebuilds', 'SOURCES.sha256'), nativeSourcesHash(root) + '\n');
rmSync(path.join(root, 'build'), { recursive: true, force: true });
run(process.execPath, [path.join(root, 'scripts', 'install.mjs'), '--force']);
