/**
 * The soak run (`npm run test:soak`): test/soak/*.soak.ts only, one file at a time, in a forked worker
 * started with --expose-gc so the heap can be measured after full collections. Not part of `npm test`.
 */
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/soak/**/*.soak.ts"],
    setupFiles: ["./test/setup.ts"],
    globalSetup: ["./test/globalSetup.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    pool: "forks",
    poolOptions: { forks: { execArgv: ["--expose-gc"], singleFork: true } },
    fakeTimers: { toFake: undefined },
    reporters: ["default"]
  }
})
