/**
 * The outbound limiter against real HTTP servers on loopback (node:http, port 0), a real client
 * (`FetchHttpClient`) and the real Memory backend, on live clocks with 1-second resets. Each server
 * counts the requests it actually received.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { createServer, type OutgoingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { InvalidArgument, PolicyNotFound, RateLimited } from "../../src/Errors.js"
import * as HttpClientLimiter from "../../src/http/client.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { Policy } from "../../src/Policy.js"
import { burstPolicy } from "./support.js"

/** What a test server answers: a status and headers, from the time since its first request (ms). */
type Answer = (sinceFirstMs: number) => { readonly status: number; readonly headers?: OutgoingHttpHeaders }

/** A test server: its base URL and how many requests it received. */
interface Upstream {
  readonly url: string
  readonly received: () => number
}

/** Serves `answer` on 127.0.0.1 at a free port for the current scope. */
const upstream = (answer: Answer) =>
  Effect.acquireRelease(
    Effect.async<{ readonly upstream: Upstream; readonly close: () => void }>((resume) => {
      let received = 0
      let first: number | undefined
      const server = createServer((request, response) => {
        received++
        first ??= Date.now()
        const { headers = {}, status } = answer(Date.now() - first)
        request.resume()
        response.writeHead(status, { "content-type": "text/plain", ...headers })
        response.end(status === 200 ? "ok" : "slow down")
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          upstream: { url: `http://127.0.0.1:${port}`, received: () => received },
          close: () => {
            server.closeAllConnections()
            server.close()
          }
        }))
      })
    }),
    ({ close }) => Effect.sync(close)
  ).pipe(Effect.map(({ upstream }) => upstream))

/** 429 with `Retry-After: 1` and the IETF pair for the first second after the first request, then 200. */
const busyForOneSecond: Answer = (since) =>
  since < 1000
    ? {
      status: 429,
      headers: {
        "retry-after": "1",
        "ratelimit-policy": "\"default\";q=5;w=1",
        "ratelimit": "\"default\";r=0;t=1"
      }
    }
    : { status: 200 }

const alwaysOk: Answer = () => ({ status: 200 })

/** A local policy that never denies during a test. */
const roomy = burstPolicy("out", 1000)

const withBackend = (...policies: Array<Policy>) =>
  Effect.provide(MemoryBackend.layer({ policies: policies.length === 0 ? [roomy] : policies }))

/** The wrapped fetch client. */
const limitedClient = (options: Partial<HttpClientLimiter.ClientLimitOptions> = {}) =>
  HttpClientLimiter.client({ policy: "out", ...options }).pipe(Effect.provide(FetchHttpClient.layer))

/** The status of a GET, or the failure. */
const get = <E>(client: HttpClient.HttpClient.With<E>, url: string) =>
  client.get(url).pipe(Effect.map((response) => response.status), Effect.scoped)

const elapsedSince = (start: number) => Date.now() - start

describe("HttpClientLimiter against a real server", () => {
  it.scopedLive("a 429 with Retry-After pauses the host until the reset; requests resume after it", () =>
    Effect.gen(function*() {
      const server = yield* upstream(busyForOneSecond)
      const client = yield* limitedClient()
      expect(yield* get(client, `${server.url}/a`)).toBe(429)
      expect(server.received()).toBe(1)
      for (let i = 0; i < 3; i++) {
        const denied = yield* Effect.flip(get(client, `${server.url}/b`))
        expect(denied).toBeInstanceOf(RateLimited)
        const limited = denied as RateLimited
        expect(limited.policy).toBe(HttpClientLimiter.REMOTE_POLICY)
        expect(limited.key).toBe(new URL(server.url).host)
        expect(limited.decision.allowed).toBe(false)
        expect(limited.decision.limit).toBe(5)
        expect(limited.decision.retryAfterMs).toBeGreaterThan(0)
        expect(limited.decision.retryAfterMs).toBeLessThanOrEqual(1000)
      }
      expect(server.received()).toBe(1)
      yield* Effect.sleep("1100 millis")
      expect(yield* get(client, `${server.url}/c`)).toBe(200)
      expect(yield* get(client, `${server.url}/d`)).toBe(200)
      expect(server.received()).toBe(3)
    }).pipe(withBackend()))

  it.scopedLive("\"wait\" mode delays a request until the pause ends, then sends it", () =>
    Effect.gen(function*() {
      const server = yield* upstream(busyForOneSecond)
      const client = yield* limitedClient({ onLimited: "wait", maxWait: "5 seconds", jitter: "20 millis" })
      expect(yield* get(client, server.url)).toBe(429)
      const start = Date.now()
      expect(yield* get(client, server.url)).toBe(200)
      expect(elapsedSince(start)).toBeGreaterThanOrEqual(900)
      expect(elapsedSince(start)).toBeLessThan(2500)
      expect(server.received()).toBe(2)
    }).pipe(withBackend()))

  it.scopedLive("\"wait\" mode fails at once when the pause outlasts maxWait", () =>
    Effect.gen(function*() {
      const server = yield* upstream(busyForOneSecond)
      const client = yield* limitedClient({ onLimited: "wait", maxWait: "200 millis" })
      expect(yield* get(client, server.url)).toBe(429)
      const start = Date.now()
      const denied = yield* Effect.flip(get(client, server.url))
      expect(denied).toBeInstanceOf(RateLimited)
      expect(elapsedSince(start)).toBeLessThan(150)
      expect(server.received()).toBe(1)
    }).pipe(withBackend()))

  it.scopedLive("a waiting request is interruptible and never sent", () =>
    Effect.gen(function*() {
      const server = yield* upstream(busyForOneSecond)
      const client = yield* limitedClient({ onLimited: "wait", maxWait: "5 seconds" })
      expect(yield* get(client, server.url)).toBe(429)
      const fiber = yield* Effect.fork(get(client, server.url))
      yield* Effect.sleep("50 millis")
      const start = Date.now()
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(elapsedSince(start)).toBeLessThan(200)
      yield* Effect.sleep("1100 millis")
      expect(server.received()).toBe(1)
    }).pipe(withBackend()))

  it.scopedLive("the local policy denies before sending: the server sees nothing", () =>
    Effect.gen(function*() {
      const server = yield* upstream(alwaysOk)
      const client = yield* limitedClient()
      expect(yield* get(client, server.url)).toBe(200)
      expect(yield* get(client, server.url)).toBe(200)
      const denied = yield* Effect.flip(get(client, server.url))
      expect(denied).toBeInstanceOf(RateLimited)
      expect((denied as RateLimited).policy).toBe("out")
      expect((denied as RateLimited).decision.limit).toBe(2)
      expect(server.received()).toBe(2)
    }).pipe(withBackend(burstPolicy("out", 2))))

  it.scopedLive("a paused host leaves a different host unaffected", () =>
    Effect.gen(function*() {
      const busy = yield* upstream(busyForOneSecond)
      const other = yield* upstream(alwaysOk)
      const client = yield* limitedClient()
      expect(yield* get(client, busy.url)).toBe(429)
      expect(yield* get(client, other.url)).toBe(200)
      expect(yield* get(client, other.url)).toBe(200)
      expect(yield* Effect.flip(get(client, busy.url))).toBeInstanceOf(RateLimited)
      expect(busy.received()).toBe(1)
      expect(other.received()).toBe(2)
    }).pipe(withBackend()))

  it.scopedLive("every header form pauses the host (on a 200 too); the next request is not sent", () => {
    const inOneSecond = () => String(Math.ceil(Date.now() / 1000) + 1)
    const inTwoSeconds = () => new Date(Date.now() + 2000).toUTCString()
    const forms: Array<readonly [string, (since: number) => ReturnType<Answer>]> = [
      ["Retry-After seconds on 429", () => ({ status: 429, headers: { "retry-after": "1" } })],
      ["Retry-After HTTP-date on 503", () => ({ status: 503, headers: { "retry-after": inTwoSeconds() } })],
      ["RateLimit r=0 on 200", () => ({ status: 200, headers: { "ratelimit": "\"default\";r=0;t=1" } })],
      [
        "RateLimit dictionary on 200",
        () => ({ status: 200, headers: { "ratelimit": "limit=3, remaining=0, reset=1" } })
      ],
      ["RateLimit-Remaining / -Reset", () => ({
        status: 200,
        headers: { "ratelimit-remaining": "0", "ratelimit-reset": "1" }
      })],
      ["X-RateLimit delta seconds", () => ({
        status: 200,
        headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1" }
      })],
      ["X-RateLimit epoch seconds", () => ({
        status: 200,
        headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": inOneSecond() }
      })]
    ]
    return Effect.gen(function*() {
      for (const [form, answer] of forms) {
        const server = yield* upstream(answer)
        const client = yield* limitedClient()
        yield* get(client, server.url)
        const second = yield* Effect.exit(get(client, server.url))
        expect(Exit.isFailure(second), form).toBe(true)
        expect(server.received(), form).toBe(1)
      }
    }).pipe(withBackend())
  })

  it.scopedLive("malformed headers are ignored: requests keep flowing", () =>
    Effect.gen(function*() {
      const server = yield* upstream(() => ({
        status: 429,
        headers: {
          "retry-after": "soon",
          "ratelimit": "\"x\";r=zero;t=1",
          "x-ratelimit-remaining": "0",
          "x-ratelimit-reset": "-5"
        }
      }))
      const client = yield* limitedClient()
      for (let i = 0; i < 3; i++) expect(yield* get(client, server.url)).toBe(429)
      expect(server.received()).toBe(3)
    }).pipe(withBackend()))

  it.scopedLive("learns from a ResponseError too (a client that fails on non-2xx)", () =>
    Effect.gen(function*() {
      const server = yield* upstream(busyForOneSecond)
      const client = HttpClient.filterStatusOk(yield* HttpClient.HttpClient)
      const limited = (yield* HttpClientLimiter.make({ policy: "out" }))(client)
      const first = yield* Effect.flip(get(limited, server.url))
      expect(first._tag).toBe("ResponseError")
      expect((yield* Effect.flip(get(limited, server.url)))._tag).toBe("RateLimited")
      expect(server.received()).toBe(1)
    }).pipe(withBackend(), Effect.provide(FetchHttpClient.layer)))

  it.scopedLive("a pause is cut to maxPause; learn: false learns nothing", () =>
    Effect.gen(function*() {
      const server = yield* upstream(() => ({ status: 429, headers: { "retry-after": "3600" } }))
      const capped = yield* limitedClient({ maxPause: "1 second" })
      expect(yield* get(capped, server.url)).toBe(429)
      const denied = yield* Effect.flip(get(capped, server.url))
      expect((denied as RateLimited).decision.retryAfterMs).toBeLessThanOrEqual(1000)
      const deaf = yield* limitedClient({ learn: false })
      expect(yield* get(deaf, server.url)).toBe(429)
      expect(yield* get(deaf, server.url)).toBe(429)
      expect(server.received()).toBe(3)
    }).pipe(withBackend()))

  it.scopedLive("the pause table is bounded: past maxKeys the oldest pause is forgotten", () =>
    Effect.gen(function*() {
      const first = yield* upstream(busyForOneSecond)
      const second = yield* upstream(busyForOneSecond)
      const client = yield* limitedClient({ maxKeys: 1 })
      expect(yield* get(client, first.url)).toBe(429)
      expect(yield* get(client, second.url)).toBe(429)
      // `first`'s pause was evicted: its next request is sent (and the 429 teaches the pause again).
      expect(yield* get(client, first.url)).toBe(429)
      expect(yield* Effect.flip(get(client, first.url))).toBeInstanceOf(RateLimited)
      expect(first.received()).toBe(2)
    }).pipe(withBackend()))

  it.scopedLive("a custom key: pauses follow it, not the host", () =>
    Effect.gen(function*() {
      const server = yield* upstream((since) =>
        since < 1000 ? { status: 429, headers: { "retry-after": "1" } } : { status: 200 }
      )
      const client = yield* limitedClient({ key: (request) => new URL(request.url).pathname })
      expect(yield* get(client, `${server.url}/a`)).toBe(429)
      expect(yield* Effect.flip(get(client, `${server.url}/a`))).toBeInstanceOf(RateLimited)
      expect(yield* get(client, `${server.url}/b`)).toBe(429) // another key: sent
      expect(server.received()).toBe(2)
    }).pipe(withBackend()))
})

describe("HttpClientLimiter adaptive", () => {
  /** A quota of 3 in a 1-second window from the first request, stated on every answer; 429 past it. */
  const quotaOfThree = (): Answer => {
    let count = 0
    return (since) => {
      if (since >= 1000) return { status: 200 }
      count++
      const remaining = Math.max(0, 3 - count)
      const headers = { "ratelimit-policy": "\"default\";q=3;w=1", "ratelimit": `"default";r=${remaining};t=1` }
      return count <= 3 ? { status: 200, headers } : { status: 429, headers: { ...headers, "retry-after": "1" } }
    }
  }

  it.scopedLive("spends the stated quota locally: concurrent requests stop at what remained", () =>
    Effect.gen(function*() {
      const server = yield* upstream(quotaOfThree())
      const client = yield* limitedClient({ adaptive: true })
      expect(yield* get(client, server.url)).toBe(200) // r=2
      const results = yield* Effect.all(Array.from({ length: 10 }, () => Effect.either(get(client, server.url))), {
        concurrency: "unbounded"
      })
      const sent = results.filter((result) => result._tag === "Right")
      const denied = results.flatMap((result) => result._tag === "Left" ? [result.left] : [])
      expect(sent.map((result) => result.right)).toEqual([200, 200])
      expect(denied).toHaveLength(8)
      for (const error of denied) {
        expect(error).toBeInstanceOf(RateLimited)
        expect((error as RateLimited).policy).toBe(HttpClientLimiter.REMOTE_POLICY)
        expect((error as RateLimited).decision.limit).toBe(3)
      }
      expect(server.received()).toBe(3)
      yield* Effect.sleep("1100 millis")
      expect(yield* get(client, server.url)).toBe(200)
    }).pipe(withBackend()))

  it.scopedLive("without it, concurrent requests overshoot and the server refuses them", () =>
    Effect.gen(function*() {
      const server = yield* upstream(quotaOfThree())
      const client = yield* limitedClient()
      expect(yield* get(client, server.url)).toBe(200)
      const statuses = yield* Effect.all(Array.from({ length: 10 }, () => get(client, server.url)), {
        concurrency: "unbounded"
      })
      expect(statuses.filter((status) => status === 429)).toHaveLength(8)
      expect(server.received()).toBe(11)
    }).pipe(withBackend()))

  it.scopedLive("a local denial gives the remote unit back", () =>
    Effect.gen(function*() {
      const server = yield* upstream(quotaOfThree())
      const client = yield* limitedClient({ adaptive: true })
      expect(yield* get(client, server.url)).toBe(200) // r=2; local: 1 of 2 left
      expect(yield* get(client, server.url)).toBe(200) // r=1; local: 0 left
      const denied = yield* Effect.flip(get(client, server.url))
      expect((denied as RateLimited).policy).toBe("out") // the local policy, and the remote unit kept
      expect(server.received()).toBe(2)
    }).pipe(withBackend(burstPolicy("out", 2))))
})

describe("HttpClientLimiter.make", () => {
  it.effect("rejects bad options and unknown policies", () =>
    Effect.gen(function*() {
      const bad = [
        { policy: "out", maxKeys: 0 },
        { policy: "out", maxKeys: 1.5 },
        { policy: "out", maxWait: Infinity },
        { policy: "out", onLimited: "retry" as "wait" }
      ]
      for (const options of bad) {
        expect(yield* Effect.flip(HttpClientLimiter.make(options))).toBeInstanceOf(InvalidArgument)
      }
      expect(yield* Effect.flip(HttpClientLimiter.make({ policy: "nope" }))).toBeInstanceOf(PolicyNotFound)
    }).pipe(withBackend()))
})
