import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Suites against real servers start their own redis-server / postgres in beforeAll.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});
