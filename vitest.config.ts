import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The demo imports the package by its name; tests run it on the sources.
  resolve: { alias: [{ find: /^fusedloss$/, replacement: fileURLToPath(new URL('./lib/index.ts', import.meta.url)) }] },
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons are safest in child processes (one addon instance per fork).
    pool: 'forks',
    // A young generation capped at 1 MiB: with V8's default (growing to 16 MiB semi-spaces under
    // a high allocation rate) the garbage between scavenges holds enough native backing stores
    // to raise RSS by ~10 MiB once, which test/leak.test.ts cannot tell from a leak.
    poolOptions: { forks: { execArgv: ['--max-semi-space-size=1'] } },
    // Every output starts as NaN, so an element a kernel leaves unwritten fails the test that
    // reads it (lib/outputs.ts).
    env: { FUSEDLOSS_POISON_OUTPUTS: '1' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
