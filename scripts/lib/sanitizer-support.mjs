// Whether this machine can build and run the sanitizer builds (Linux, gcc with libasan), and
// why not. Off CI a missing toolchain skips the sanitizer steps of `npm test` with a notice;
// on CI (CI=true) it is an error.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export function libasanPath() {
  if (process.platform !== 'linux') return { path: null, why: `sanitizer builds run on Linux only (this is ${process.platform})` };
  try {
    const p = execFileSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
    if (existsSync(p) && p.includes('/')) return { path: p, why: null };
    return { path: null, why: "gcc's libasan.so is not installed (Debian: apt-get install libasan8)" };
  } catch {
    return { path: null, why: 'gcc was not found' };
  }
}

/** Exits (0 off CI, 1 on CI) when the sanitizers cannot run here. Returns libasan's path. */
export function requireSanitizers(step) {
  const { path, why } = libasanPath();
  if (path) return path;
  if (process.env.CI) {
    console.error(`${step}: ${why}`);
    process.exit(1);
  }
  console.log(`${step}: skipped: ${why}`);
  process.exit(0);
}
