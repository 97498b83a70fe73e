/**
 * The server as one layer (`ThrottleKitServer.layer`): what it serves (the Fleet door only with a
 * federated policy), when it uses the coordinator, the startup warnings for loopback-only doors on a
 * public address, policies in code validated once, and one Redis connection with the scripts read once
 * for a Redis-backed server, whose store and coordinator both run on it (counted on a private
 * `redis-server` with `CLIENT LIST`, and by the spans of the connect and the script load). The Redis URL
 * is taken `Redacted` (as `serve` passes it) and never printed.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it, vi } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, Tracer } from "effect"
import { Redis } from "ioredis"
import { Coordinator } from "../../src/coordinator/Coordinator.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { Policy } from "../../src/Policy.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import { PolicySet } from "../../src/PolicySet.js"
import * as Cli from "../../src/server/Cli.js"
import * as Serve from "../../src/server/Serve.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { redisServer, urlWithPassword } from "../support/redisServer.js"

const plain = "limiters:\n  api: { strategy: gcra, limit: 5, period: 1s }\n"
const withFederated =
  `${plain}  global:\n    strategy: fixedWindow\n    limit: 10\n    windowMs: 1000\n    federated:\n      batch: 2\n`
const withTwoTier =
  `${plain}  t:\n    strategy: slidingWindow\n    limit: 10\n    windowMs: 1000\n    twoTier:\n      batch: 2\n`
const withCachedDeny =
  `${plain}  t:\n    strategy: fixedWindow\n    limit: 10\n    windowMs: 1000\n    twoTier:\n      mode: cached-deny\n`
/** Every part that can talk to Redis: the store, and a two-tier and a federated policy (the coordinator). */
const leasing =
  `${withFederated}  t:\n    strategy: slidingWindow\n    limit: 100\n    windowMs: 60000\n    twoTier:\n      batch: 5\n`

const policiesOf = (config: string) => PolicyFile.parse(config, "test")

/** The server on a free loopback port, built in the current scope. */
const serve = (options: Omit<ThrottleKitServer.ThrottleKitServerOptions, "host" | "port">) =>
  Layer.build(ThrottleKitServer.layer({ ...options, host: "127.0.0.1", port: 0 }))

/** The names of the spans started while `effect` runs (the tracer still records them as usual). */
const spansOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.tracer, (native) => {
    const names: Array<string> = []
    const recording = Tracer.make({
      span: (name, ...rest) => {
        names.push(name)
        return native.span(name, ...rest)
      },
      context: (f, fiber) => native.context(f, fiber)
    })
    return Effect.map(Effect.withTracer(effect, recording), (value) => ({ value, names }))
  })

/** How many clients are connected to the Redis at `url` (the asking client included). */
const connections = (admin: Redis) =>
  Effect.map(
    Effect.tryPromise(() => admin.client("LIST") as Promise<string>),
    (list) => list.split("\n").filter((line) => line.trim() !== "").length
  )

const adminClient = (url: string) =>
  Effect.acquireRelease(Effect.sync(() => new Redis(url)), (client) => Effect.sync(() => client.disconnect()))

describe("ThrottleKitServer", () => {
  it.scoped("serves Monitor always, Fleet only with a federated policy, and the admin door unless turned off", () =>
    Effect.gen(function*() {
      const services = (config: string) =>
        Effect.scoped(Effect.flatMap(
          Effect.flatMap(policiesOf(config), (policies) => serve({ policies })),
          (context) => Effect.succeed(Context.get(context, ThrottleKitServer.GrpcServer).services)
        ))
      expect(yield* services(plain)).toEqual([
        "throttlekit.v1.RateLimiter",
        "throttlekit.v1.Monitor",
        "throttlekit_effect.admin.v1.RateLimiterAdmin"
      ])
      expect(yield* services(withFederated)).toEqual([
        "throttlekit.v1.RateLimiter",
        "throttlekit.v1.Monitor",
        "throttlekit.v1.Fleet",
        "throttlekit_effect.admin.v1.RateLimiterAdmin"
      ])
      const withoutAdmin = yield* Effect.scoped(Effect.flatMap(
        Effect.flatMap(policiesOf(plain), (policies) => serve({ policies, admin: false })),
        (context) => Effect.succeed(Context.get(context, ThrottleKitServer.GrpcServer).services)
      ))
      expect(withoutAdmin).toEqual(["throttlekit.v1.RateLimiter", "throttlekit.v1.Monitor"])
    }))

  it.effect("uses the coordinator only for policies that lease from it", () =>
    Effect.gen(function*() {
      const uses = (config: string) => Effect.map(policiesOf(config), ThrottleKitServer.usesCoordinator)
      expect(yield* uses(plain)).toBe(false)
      expect(yield* uses(withFederated)).toBe(true)
      expect(yield* uses(withTwoTier)).toBe(true)
      expect(yield* uses(withCachedDeny)).toBe(false)
    }))

  it.effect("warns when a door without a secret is bound on a public address", () =>
    Effect.gen(function*() {
      const federated = yield* policiesOf(withFederated)
      const open = { policies: federated }
      expect(ThrottleKitServer.warnings(open, "127.0.0.1")).toEqual([])
      expect(ThrottleKitServer.warnings(open, "::1")).toEqual([])
      const [warning] = ThrottleKitServer.warnings(open, "0.0.0.0")
      expect(warning).toContain("Monitor, Fleet and Admin answer loopback callers only")
      expect(warning).toContain("--monitor-secret / --fleet-secret / --admin-secret")
      const guarded = {
        policies: federated,
        monitorSecret: Redacted.make("m"),
        fleetSecret: Redacted.make("f"),
        adminSecret: Redacted.make("a")
      }
      expect(ThrottleKitServer.warnings(guarded, "0.0.0.0")).toEqual([])
      expect(ThrottleKitServer.warnings({ policies: yield* policiesOf(plain), admin: false }, "192.0.2.2")).toEqual([
        "warning: Monitor answers loopback callers only (remote calls get UNAUTHENTICATED); pass --monitor-secret to allow remote callers"
      ])
      expect(ThrottleKitServer.warnings({ policies: yield* policiesOf(plain) }, "192.0.2.2")).toEqual([
        "warning: Monitor and Admin answer loopback callers only (remote calls get UNAUTHENTICATED); pass --monitor-secret / --admin-secret to allow remote callers"
      ])
    }))

  it.scoped("validates policies written in code once, failing the layer with the loader's PolicyError", () =>
    Effect.gen(function*() {
      const bad: Policy = {
        kind: "limiter",
        name: "api",
        prefix: "api",
        maxKeys: 100,
        strategy: { kind: "fixedWindow", limit: 0, windowMs: 1000 }
      }
      const error = yield* Effect.flip(serve({ policies: [bad] }))
      const expected = yield* Effect.flip(PolicySet.make([bad]))
      expect(error).toMatchObject({ _tag: "PolicyError", path: expected.path, reason: expected.reason })
    }))

  it.live(
    "a Redis-backed server opens one connection and reads the scripts once, for its store and coordinator",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const admin = yield* adminClient(redis.url)
        expect(yield* connections(admin)).toBe(1)
        const policies = yield* policiesOf(leasing)

        const { names, value: context } = yield* spansOf(
          serve({ policies, store: { kind: "redis", redis: redis.url } })
        )
        // The admin client and the server's one connection.
        expect(yield* connections(admin)).toBe(2)
        expect(names.filter((name) => name === "RedisClient.connect")).toHaveLength(1)
        expect(names.filter((name) => name === "Scripts.load")).toHaveLength(1)
        // Leasing policies with a Redis store: the coordinator is Redis's, on that same connection.
        expect(Context.get(context, Coordinator).store).toBe("redis")

        // The store (a plain check), the coordinator (a two-tier lease and a federated one) all answer.
        const address = Context.get(context, ThrottleKitServer.GrpcServer).address
        const decisions = yield* Effect.provide(
          Effect.flatMap(
            RateLimiter,
            (limiter) => Effect.all([limiter.check("api", "k"), limiter.check("t", "k"), limiter.check("global", "k")])
          ),
          ServiceBackend.layer({ target: address, deadline: "5 seconds" })
        )
        expect(decisions.map((d) => d.allowed)).toEqual([true, true, true])
        // The store's key, the two-tier lease's (the policy's own key) and the federated budget's.
        expect((yield* Effect.tryPromise(() => admin.keys("*"))).sort()).toEqual(["api:k", "t:k", "tk:fed:k"])
        expect(yield* connections(admin)).toBe(2)
      })),
    { timeout: 60_000 }
  )

  it.live("releasing the layer closes its Redis connection", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* redisServer
      const admin = yield* adminClient(redis.url)
      const policies = yield* policiesOf(leasing)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* serve({ policies, store: { kind: "redis", redis: redis.url } })
        expect(yield* connections(admin)).toBe(2)
      }))
      // QUIT is answered before the socket closes: wait for the server to see it go.
      let open = yield* connections(admin)
      for (let i = 0; i < 50 && open !== 1; i++) {
        yield* Effect.sleep("20 millis")
        open = yield* connections(admin)
      }
      expect(open).toBe(1)
    })), { timeout: 60_000 })

  it.live(
    "takes the Redis URL Redacted (serve wraps the CLI's): it connects, and a failure never prints the password",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const policies = yield* policiesOf(plain)
        const withPassword = (user: string) => urlWithPassword(redis.url, user, "hunter2")
        // `serve` hands the store the URL redacted.
        const command = yield* Cli.load([
          "serve",
          "--config",
          "p.yaml",
          "--store",
          "redis",
          "--redis",
          withPassword("")
        ]).pipe(Effect.provide(NodeFileSystem.layer))
        if (command._tag !== "Serve") return expect.fail("expected serve")
        const options = Serve.serverOptions(command.args, policies, undefined)
        const store = options.store
        if (store?.kind !== "redis") return expect.fail("expected a Redis store")
        expect(Redacted.isRedacted(store.redis)).toBe(true)
        expect(JSON.stringify(store)).not.toContain("hunter2")

        // This Redis has no password: ioredis warns (without the password) and the server starts on it.
        const warn = vi.spyOn(console, "warn").mockImplementation(() => {})
        yield* Effect.addFinalizer(() => Effect.sync(() => warn.mockRestore()))
        const context = yield* serve({ policies, store })
        expect(Context.get(context, ThrottleKitServer.GrpcServer).port).toBeGreaterThan(0)
        // It knows no user "alice": the login is refused, and the StartupError does not repeat the URL.
        const refused = yield* Effect.flip(Effect.scoped(
          serve({ policies, store: { kind: "redis", redis: Redacted.make(withPassword("alice")), timeoutMs: 500 } })
        ))
        expect(refused._tag).toBe("StartupError")
        for (const text of [refused.message, String(refused), JSON.stringify(refused)]) {
          expect(text).not.toContain("hunter2")
        }
        for (const call of warn.mock.calls) expect(call.join(" ")).not.toContain("hunter2")
      })),
    { timeout: 30_000 }
  )

  it.live("an unreachable Redis fails the layer with a StartupError naming the store", () =>
    Effect.gen(function*() {
      const policies = yield* policiesOf(plain)
      const error = yield* Effect.flip(
        Effect.scoped(serve({ policies, store: { kind: "redis", redis: "redis://127.0.0.1:1" } }))
      )
      expect(error._tag).toBe("StartupError")
      expect(error.message).toMatch(/^the Redis store failed to start: /)
    }), { timeout: 30_000 })
})
