import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The demo imports the package by its name; tests run it on the sources.
  resolve: { alias: [{ find: /^fusedloss$/, replacement: fileURLToPath(new URL('./lib/index.ts', import.meta.url)) }] },
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons are safest in child processes (one addon instance per fork).
    pool: 'forks',
    // Every output starts as NaN, so an element a kernel leaves unwritten fails the test that
    // reads it (lib/outputs.ts).
    env: { FUSEDLOSS_POISON_OUTPUTS: '1' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
