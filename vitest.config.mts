import { defineConfig } from 'vitest/config';

// Unit tests of the front end's model and views (happy-dom stands in for the browser).
export default defineConfig({
  test: {
    include: ['extension/test/**/*.test.ts'],
    environment: 'happy-dom'
  }
});
