/**
 * The browser the page tests drive (the Lens): Debian's `chromium`, run headless by puppeteer-core. It is
 * installed by `.ci/run`, and by `test/globalSetup.ts` when the tests run as root on Debian; a missing one
 * stops the run with a one-line fix (it is an install problem, never a skip).
 */
import { spawnSync } from "node:child_process"

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM_PATH = "/usr/bin/chromium"

/** True when the browser can be run on this machine. */
export const chromiumAvailable = (): boolean => {
  const probe = spawnSync(CHROMIUM_PATH, ["--version"], { stdio: "ignore" })
  return probe.error === undefined && probe.status === 0
}

/** The one-line fix printed when the browser is missing. */
export const MISSING_CHROMIUM_HINT = `chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium)`
