/**
 * The Lens as a person sees it: `serve --lens-port 0` in its own process (memory store), the page opened
 * in headless Chromium (Debian's `chromium`, driven by puppeteer-core), real gRPC checks through the
 * `ServiceBackend` client. The page must draw the chart from the decisions made, show a denial made after
 * it opened in its live list within 2 s (the acceptance: the bound is the DOM wait's own timeout,
 * and the time measured is checked against it), fill the top denied keys and the guards, and the server
 * must still stop at once (exit 0) with the page's live stream open. The run writes a screenshot to
 * `.tmp/lens.png`. Then a Lens with a secret (in-process): refused without it, opened by `/?token=` once,
 * after which the page and its live stream run on the session cookie.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Data, Effect, Exit, Layer, Option, Redacted, Scope } from "effect"
import { mkdirSync } from "node:fs"
import * as path from "node:path"
import puppeteer, { type Browser, type Page } from "puppeteer-core"
import * as ServiceBackend from "../../../src/layers/ServiceBackend.js"
import * as PolicyFile from "../../../src/PolicyFile.js"
import * as ThrottleKitServer from "../../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../../src/services/RateLimiter.js"
import { CHROMIUM_PATH } from "../../support/chromium.js"
import { repoRoot, startServer, tempFile } from "../cliProcess.js"
import { lensConfig } from "./lensConfig.js"

/** Where the run leaves the page's picture. */
const SCREENSHOT = path.join(repoRoot, ".tmp", "lens.png")

class BrowserFailure extends Data.TaggedError("BrowserFailure")<{ readonly reason: string }> {}

/** A puppeteer call as an Effect; its failure says what was being done. */
const browse = <A>(what: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (error) => new BrowserFailure({ reason: `${what}: ${error instanceof Error ? error.message : error}` })
  })

/** Headless Chromium for the life of the scope. */
const chromium = Effect.acquireRelease(
  browse("launch chromium", () =>
    puppeteer.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      // The tests run as root, where Chromium's sandbox cannot start.
      args: ["--no-sandbox", "--disable-dev-shm-usage"]
    })),
  (browser: Browser) => Effect.promise(() => browser.close())
)

/** The y of each point of a chart's polyline. */
const chartLine = (page: Page, policy: string, line: "allowed" | "denied") =>
  Effect.map(
    browse("read the chart", () =>
      page.$eval(`svg.chart[data-policy="${policy}"] polyline.${line}`, (el): string =>
        el.getAttribute("points") ?? "")),
    (points): ReadonlyArray<number> =>
      points.trim().split(/\s+/).filter((point) =>
        point !== ""
      ).map((point) => Number(point.split(",")[1]))
  )

describe("the Lens page in headless Chromium", () => {
  it.live(
    "draws the chart, shows a live denial within 2 s of a denied check, and lets the server stop",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const file = tempFile("lens.yaml", lensConfig)
        const server = yield* startServer(["--config", file, "--port", "0", "--lens-port", "0"])
        const lensMatch = /, lens=(127\.0\.0\.1:\d+)\]/.exec(server.startupLine)
        expect(lensMatch).not.toBeNull()
        const lens = lensMatch![1]!
        const limiter = yield* Effect.map(
          Layer.build(ServiceBackend.layer({ target: server.address, deadline: "5 seconds", coalesceChecks: false })),
          Context.get(RateLimiter)
        )

        // Traffic before the page opens: allowed decisions on two policies, and one slot held on the guard.
        for (let i = 0; i < 2; i++) expect((yield* limiter.check("login", "warm-up")).allowed).toBe(true)
        for (let i = 0; i < 20; i++) yield* limiter.check("search", `user-${i % 4}`)
        const holding = yield* Scope.make()
        const slot = yield* Scope.extend(limiter.admit("pool", "worker-1"), holding)
        expect(slot.held).toBe(true)

        const browser = yield* chromium
        const page = yield* browse("open a page", () => browser.newPage())
        yield* browse("size the page", () => page.setViewport({ width: 1280, height: 900 }))
        const errors: Array<string> = []
        page.on("pageerror", (error) => errors.push(String(error)))
        page.on("console", (message) => {
          if (message.type() === "error") errors.push(message.text())
        })
        const answer = yield* browse("load the page", () => page.goto(`http://${lens}/`, { waitUntil: "load" }))
        expect(answer?.status()).toBe(200)
        yield* browse("wait for the first picture", () => page.waitForSelector("body[data-ready]", { timeout: 10_000 }))
        yield* browse("wait for the live stream", () =>
          page.waitForSelector("#live[data-state=\"open\"]", { timeout: 10_000 }))

        // The chart of `login` has drawn the allowed decisions: a step above the baseline.
        const intervals = yield* browse("read the chart", () =>
          page.$eval("svg.chart[data-policy=\"login\"]", (el) =>
            Number(el.getAttribute("data-intervals"))))
        expect(intervals).toBeGreaterThanOrEqual(1)
        const allowed = yield* chartLine(page, "login", "allowed")
        expect(allowed.length).toBeGreaterThanOrEqual(2)
        const baseline = yield* browse("read the chart", () =>
          page.$eval("svg.chart[data-policy=\"login\"]", (el) =>
            Number(el.getAttribute("data-baseline"))))
        expect(Math.min(...allowed)).toBeLessThan(baseline)
        const maxRate = yield* browse("read the chart", () =>
          page.$eval("svg.chart[data-policy=\"login\"]", (el) =>
            Number(el.getAttribute("data-max-rate"))))
        expect(maxRate).toBeGreaterThan(0)

        // A denied check: the fourth on one key of a limit of 3 per window.
        const key = `tenant-${Date.now().toString(36)}`
        for (let i = 0; i < 3; i++) {
          expect((yield* limiter.check("login", key)).allowed).toBe(true)
        }
        const sentAt = Date.now()
        const denied = yield* limiter.check("login", key)
        expect(denied.allowed).toBe(false)
        yield* browse("wait for the live denial", () =>
          page.waitForSelector(`#denials li.fresh[data-policy="login"][data-key="${key}"]`, { timeout: 2000 }))
        const shownAfterMs = Date.now() - sentAt
        expect(shownAfterMs).toBeLessThan(2000)
        const row = yield* browse("read the denial", () =>
          page.$eval(`#denials li[data-key="${key}"]`, (el) =>
            el.textContent ?? ""))
        expect(row).toContain("login")
        expect(row).toContain(key)

        // The next refresh (every 2 s) draws the denial in the chart and lists the key among the top denied.
        yield* browse("wait for the chart's denials", () =>
          page.waitForSelector("svg.chart[data-policy=\"login\"]:not([data-max-denied=\"0\"])", { timeout: 10_000 }))
        const deniedLine = yield* chartLine(page, "login", "denied")
        expect(Math.min(...deniedLine)).toBeLessThan(baseline)
        const topKeys = yield* browse("read the top denied keys", () =>
          page.$$eval("#top-denied td.key", (cells) =>
            cells.map((c) =>
              c.textContent
            )))
        expect(topKeys).toContain(key)
        const guard = yield* browse("read the guards", () =>
          page.$eval("[data-guard=\"pool\"]", (el) =>
            el.textContent ?? ""))
        expect(guard).toContain("1 / 4 in flight")
        expect(errors).toEqual([])

        yield* Effect.sync(() =>
          mkdirSync(path.dirname(SCREENSHOT), { recursive: true })
        )
        yield* browse("take the screenshot", () =>
          page.screenshot({ path: SCREENSHOT, fullPage: true }))

        // With the page's live stream still open, the server stops at once and cleanly.
        yield* Scope.close(holding, Exit.void)
        const ended = yield* server.stop
        expect(ended.code).toBe(0)
        expect(ended.stdout).toContain("throttlekit-effect stopped")
        yield* browse("wait for the page to see the stream drop", () =>
          page.waitForSelector("#live:not([data-state=\"open\"])", { timeout: 10_000 }))
      })),
    120_000
  )

  it.live(
    "with a secret: refused without it; /?token= once, then the page and its live stream run on the cookie",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const secret = "open sesame/+"
        const policies = yield* PolicyFile.parse(lensConfig, "test")
        const context = yield* Layer.build(ThrottleKitServer.layer({
          policies,
          host: "127.0.0.1",
          port: 0,
          lens: { port: 0, secret: Redacted.make(secret) }
        }))
        const lens = Option.getOrThrow(Context.get(context, ThrottleKitServer.LensServer)).address
        const limiter = yield* Effect.map(
          Layer.build(ServiceBackend.layer({
            target: Context.get(context, ThrottleKitServer.GrpcServer).address,
            deadline: "5 seconds",
            coalesceChecks: false
          })),
          Context.get(RateLimiter)
        )
        const browser = yield* chromium
        const page = yield* browse("open a page", () => browser.newPage())

        const refused = yield* browse("load the page", () => page.goto(`http://${lens}/`))
        expect(refused?.status()).toBe(401)
        expect(yield* browse("read the page", () => page.content())).toContain("the Lens needs its secret")

        const opened = yield* browse("load the page with the token", () =>
          page.goto(`http://${lens}/?token=${encodeURIComponent(secret)}`, { waitUntil: "load" }))
        expect(opened?.status()).toBe(200)
        // The token is gone from the address bar: the page runs on the session cookie.
        expect(page.url()).toBe(`http://${lens}/`)
        yield* browse("wait for the first picture", () =>
          page.waitForSelector("body[data-ready]", { timeout: 10_000 }))
        yield* browse("wait for the live stream", () =>
          page.waitForSelector("#live[data-state=\"open\"]", { timeout: 10_000 }))
        expect((yield* limiter.check("export", "eve")).allowed).toBe(true)
        expect((yield* limiter.check("export", "eve")).allowed).toBe(false)
        yield* browse("wait for the live denial", () =>
          page.waitForSelector("#denials li.fresh[data-policy=\"export\"][data-key=\"eve\"]", { timeout: 5000 }))
      })),
    120_000
  )
})
