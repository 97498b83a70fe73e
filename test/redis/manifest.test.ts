/**
 * The vendored scripts and their manifest: every SHA-1 is the SHA-1 of the file's bytes, the built files
 * are in step with `vendor/lua/src` (so `npm run lua:build` was run), the contract's check/read scripts
 * take the ARGV of CONTRACT.md §5 in its order, and the loader refuses a drifted file.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Schema } from "effect"
import { createHash } from "node:crypto"
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { drift, luaDir } from "../../scripts/lua-build.js"
import { loadScripts, Manifest } from "../../src/redis/Scripts.js"

const manifest = Schema.decodeUnknownSync(Manifest)(JSON.parse(readFileSync(join(luaDir, "manifest.json"), "utf8")))
const byName = new Map(manifest.scripts.map((s) => [s.name, s]))

describe("vendor/lua manifest", () => {
  it("lists every script with the SHA-1 of its exact bytes", () => {
    expect(manifest.scripts.length).toBe(69)
    for (const spec of manifest.scripts) {
      const bytes = readFileSync(join(luaDir, spec.file))
      expect([spec.name, createHash("sha1").update(bytes).digest("hex")]).toEqual([spec.name, spec.sha1])
    }
  })

  it("is in step with vendor/lua/src (npm run lua:build)", () => {
    expect(drift()).toEqual([])
  })

  it("gives the contract's check and read scripts the wire's KEYS and ARGV order (the fence after them)", () => {
    const wire: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
      ["gcra", ["now", "periodMs", "limit", "burst", "cost"]],
      ["tokenBucket", ["now", "capacity", "refillPerSec", "cost"]],
      ["fixedWindow", ["now", "limit", "windowMs", "cost"]],
      ["slidingWindow", ["now", "windowMs", "limit", "cost", "buckets"]],
      ["slidingWindowLog", ["now", "windowMs", "limit", "cost"]],
      // The core's quota script (calendar and fixed cadences; a rolling quota runs slidingWindow's).
      ["quota", ["now", "limit", "cost", "mode", "periodMs", "anchor", "offsetMs", "weekStartsOn"]]
    ]
    // A consuming script takes the wire's ARGV and then its optional fence: a client that sends only
    // the wire's ARGV runs it unfenced. Its KEYS: the wire's key, then the key's admin block (optional: a
    // client that sends one key reads no block).
    for (const [strategy, argv] of wire) {
      expect(byName.get(`${strategy}.check`)).toMatchObject({
        strategy,
        role: "check",
        keys: ["key", "block"],
        argv: [...argv, "fence"]
      })
      expect(byName.get(`${strategy}.read`)).toMatchObject({ strategy, role: "read", keys: ["key"], argv: [] })
      for (const role of ["peek", "forecast", "admit"]) expect(byName.has(`${strategy}.${role}`)).toBe(true)
    }
    for (const role of ["acquire", "release", "renew", "reclaim", "read"]) {
      expect(byName.get(`concurrency.${role}`)?.keys).toEqual(["leases", "guard"])
    }
    expect(byName.get("tokenBudget.debit")?.argv).toEqual(["now", "budget", "windowMs", "tokens", "fence"])
    // The budget's reads take the debit's key and parameters, and no fence (they write nothing).
    expect(byName.get("tokenBudget.debit")?.keys).toEqual(["key", "block"])
    expect(byName.get("tokenBudget.peek")).toMatchObject({
      keys: ["key", "block"],
      argv: ["now", "budget", "windowMs"]
    })
    expect(byName.get("tokenBudget.forecast")).toMatchObject({
      keys: ["key", "block"],
      argv: ["now", "budget", "windowMs", "tokens"]
    })
    // The core's coordinator and region-pool wire (federated, federatedFairEscrow): its ARGV, then the fence.
    expect(byName.get("federated.lease")).toMatchObject({
      keys: ["key"],
      argv: ["now", "tokens", "windowMs", "budget", "fence"]
    })
    expect(byName.get("regionFairPool.grant")).toMatchObject({
      keys: ["pool"],
      argv: ["now", "windowMs", "limit", "region", "weight", "wantTotal", "fence"]
    })
    expect(byName.get("regionFairPool.release")).toMatchObject({ keys: ["pool"], argv: ["now", "windowMs", "region"] })
    expect(byName.get("regionFairPool.stats")).toMatchObject({ keys: ["pool"], argv: [] })
    // The ThrottleKit core's fleet concurrency heartbeat: its ARGV order, then `allocation` (the core
    // coordinator's option); no fence (a late heartbeat only renews a report).
    expect(byName.get("distributedConcurrency.heartbeat")).toMatchObject({
      keys: ["key"],
      argv: [
        "nodeId",
        "lLocal",
        "inflight",
        "expiresAt",
        "now",
        "aggregate",
        "seq",
        "appliedGen",
        "handoff",
        "allocation"
      ]
    })
    expect(byName.get("distributedConcurrency.leave")).toMatchObject({ keys: ["key"], argv: ["nodeId"] })
    // Exactly the consuming scripts (and the admin's penalize and reward, which write) take a fence, last.
    const fenced = [...byName.values()].filter((spec) => spec.argv.includes("fence"))
    expect(fenced.map((spec) => spec.name).sort()).toEqual(
      [...byName.values()].filter((spec) =>
        ["check", "admit", "acquire", "debit", "reserve", "lease", "grant", "penalize", "reward", "block", "unblock"]
          .includes(spec.role)
      )
        .map((spec) => spec.name).sort()
    )
    // Last, or just before a list (which takes the rest of ARGV): the fence sits at a fixed index.
    for (const spec of fenced) {
      expect([spec.name, spec.argv.at(spec.argv.at(-1)!.endsWith("...") ? -2 : -1)]).toEqual([spec.name, "fence"])
    }
    // The multi-check: every dimension's wire key, then its kind, cost and parameters after now and fence.
    // (The Redis store sends each dimension's block key after the wire keys: 2n KEYS.)
    expect(byName.get("multi.check")).toMatchObject({ keys: ["keys..."], argv: ["now", "fence", "dims..."] })
    // Many checks of one policy: each key's check in turn (coalesced checks, checkMany), written as allowed;
    // the policy's kind and parameters once, then one cost per key (or one that every key spends).
    expect(byName.get("many.check")).toMatchObject({
      keys: ["keys..."],
      argv: ["now", "kind", "p1", "p2", "p3", "p4", "p5", "p6", "fence", "costs..."]
    })
    // The admin's block and unblock take the block key alone; reset forgets the state and the block.
    expect(byName.get("key.block")).toMatchObject({ keys: ["block"], argv: ["now", "durationMs", "fence"] })
    expect(byName.get("key.unblock")).toMatchObject({ keys: ["block"], argv: ["fence"] })
    expect(byName.get("key.reset")).toMatchObject({ keys: ["key", "block"], argv: [] })
  })

  it.effect("loads every script, and refuses a file whose bytes drifted from the manifest", () =>
    Effect.gen(function*() {
      const catalog = yield* loadScripts()
      expect(catalog.scripts.size).toBe(69)
      expect(catalog.find("gcra", "check")?.name).toBe("gcra.check")

      const copy = mkdtempSync(join(tmpdir(), "tk-lua-"))
      try {
        cpSync(luaDir, copy, { recursive: true })
        writeFileSync(
          join(copy, "gcra.check.lua"),
          readFileSync(join(copy, "gcra.check.lua"), "utf8") + "\n-- edited\n"
        )
        const error = yield* Effect.flip(loadScripts(copy))
        expect(error._tag).toBe("BackendError")
        expect(error.code).toBe("SCRIPT_LOAD")
        expect(error.detail).toContain("gcra.check.lua")
        const missing = yield* Effect.flip(loadScripts(join(copy, "nowhere")))
        expect(missing.code).toBe("SCRIPT_LOAD")
      } finally {
        rmSync(copy, { recursive: true, force: true })
      }
    }))
})
