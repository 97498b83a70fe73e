/**
 * What the server adds around its store: the Fleet door only with a federated policy, the coordinator
 * only for policies that lease, and a warning when a loopback-only door is bound on a public address.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import * as Config from "../../src/Config.js"
import * as ServerDoors from "../../src/fleet/ServerDoors.js"

const plain = "limiters:\n  api: { strategy: gcra, limit: 5, period: 1s }\n"
const withFederated =
  `${plain}  global:\n    strategy: fixedWindow\n    limit: 10\n    windowMs: 1000\n    federated:\n      batch: 2\n`
const withTwoTier =
  `${plain}  t:\n    strategy: slidingWindow\n    limit: 10\n    windowMs: 1000\n    twoTier:\n      batch: 2\n`
const withCachedDeny =
  `${plain}  t:\n    strategy: fixedWindow\n    limit: 10\n    windowMs: 1000\n    twoTier:\n      mode: cached-deny\n`

const doorsFor = (config: string, secrets: { monitor?: string; fleet?: string } = {}) =>
  Effect.flatMap(Config.parse(config, "test"), (policies) =>
    ServerDoors.make({
      policies,
      store: { kind: "memory" },
      monitorSecret: Option.map(Option.fromNullable(secrets.monitor), Redacted.make),
      fleetSecret: Option.map(Option.fromNullable(secrets.fleet), Redacted.make),
      nodeId: "n"
    }))

describe("ServerDoors", () => {
  it.scoped("serves Monitor always and Fleet only with a federated policy", () =>
    Effect.gen(function*() {
      const names = (doors: ServerDoors.ServerDoors) => doors.services.map((s) => s.descriptor.typeName)
      expect(names(yield* doorsFor(plain))).toEqual(["throttlekit.v1.Monitor"])
      expect(names(yield* doorsFor(withFederated))).toEqual(["throttlekit.v1.Monitor", "throttlekit.v1.Fleet"])
    }))

  it.effect("uses the coordinator only for policies that lease from it", () =>
    Effect.gen(function*() {
      const uses = (config: string) => Effect.map(Config.parse(config, "test"), ServerDoors.usesCoordinator)
      expect(yield* uses(plain)).toBe(false)
      expect(yield* uses(withFederated)).toBe(true)
      expect(yield* uses(withTwoTier)).toBe(true)
      expect(yield* uses(withCachedDeny)).toBe(false)
    }))

  it.scoped("warns when a door without a secret is bound on a public address", () =>
    Effect.gen(function*() {
      const open = yield* doorsFor(withFederated)
      expect(open.warnings("127.0.0.1")).toEqual([])
      expect(open.warnings("::1")).toEqual([])
      const [warning] = open.warnings("0.0.0.0")
      expect(warning).toContain("Monitor and Fleet answer loopback callers only")
      expect(warning).toContain("--monitor-secret / --fleet-secret")
      const guarded = yield* doorsFor(withFederated, { monitor: "m", fleet: "f" })
      expect(guarded.warnings("0.0.0.0")).toEqual([])
      const half = yield* doorsFor(plain)
      expect(half.warnings("192.0.2.2")).toEqual([
        "warning: Monitor answers loopback callers only (remote calls get UNAUTHENTICATED); pass --monitor-secret to allow remote callers"
      ])
    }))
})
