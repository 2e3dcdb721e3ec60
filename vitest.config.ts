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
  },
});
