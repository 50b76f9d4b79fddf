import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons are safest in child processes (one addon instance per fork).
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
