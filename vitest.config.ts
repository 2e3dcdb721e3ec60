import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Sheaf's services use TypeScript's legacy decorators with emitted parameter
  // metadata (`@Params()` reads `design:paramtypes`), so the test transform must
  // produce the same output as `tsc` does for the build.
  oxc: {
    decorator: { legacy: true, emitDecoratorMetadata: true },
  },
  test: {
    include: ['test/**/*.test.ts'],
    // The fault runs have their own config (vitest.faults.config.ts, npm run test:faults).
    exclude: ['test/faults/**', '**/node_modules/**'],
    globalSetup: ['test/setup/build.ts', 'test/setup/pulsar-broker.ts'],
    setupFiles: ['test/setup/delete-namespaces.ts'],
    // Tests against the real broker wait on it: connections, lookups, delayed delivery.
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
