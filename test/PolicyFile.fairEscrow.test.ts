/**
 * Loading the fair-escrow and federated kinds: one example per kind written as the ThrottleKit core
 * documents them (its YAML subset: block maps and one-level flow maps), each loading unchanged into the
 * typed model with the core's defaults, and bad configs failing with a `PolicyError` naming the path of
 * the offending field.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as PolicyFile from "../src/PolicyFile.js"
import { PolicySet } from "../src/PolicySet.js"

const FAIR_ESCROW = `
version: 1
limiters:
  llm:
    fairEscrow:
      limit: 100000
      windowMs: 60000
      weights: { enterprise: 5, pro: 2 }
      maxKeys: 50000
      costRoom: true
      costRoomMaxKeys: 64
      costRoomRingSize: 16
      unit: "tokens"
  fair-api: { fairEscrow: { limit: 4, windowMs: 60000 } }
`

const FEDERATED_FAIR_ESCROW = `
limiters:
  global-llm:
    federatedFairEscrow:
      limit: 1000000
      windowMs: 60000
      region: us-east
      key: llm-budget
      prefix: "tk:rfp"
      weights:
        tenant-a: 2
        tenant-b: 0.5
  fe:
    federatedFairEscrow: { limit: 100, windowMs: 1000 }
`

const FEDERATED = `
limiters:
  api-global:
    strategy: fixedWindow
    limit: 1000
    windowMs: 60000
    federated:
      region: eu-west
      batch: 32
  fed: { strategy: fixedWindow, limit: 10, period: "1s", federated: {} }
`

const load = (text: string, region?: string) =>
  PolicyFile.parse(text, "example.yaml", region === undefined ? {} : { region })

describe("PolicyFile: the core's fair-escrow and federated examples", () => {
  it.effect("fairEscrow loads with the core's defaults (Cost Room knobs checked, not modelled)", () =>
    Effect.gen(function*() {
      const set = yield* load(FAIR_ESCROW)
      expect(set.policies).toEqual([
        {
          kind: "fair",
          name: "llm",
          prefix: "llm",
          maxKeys: 50000,
          fairEscrow: { limit: 100000, windowMs: 60000, weights: { enterprise: 5, pro: 2 } }
        },
        {
          kind: "fair",
          name: "fair-api",
          prefix: "fair-api",
          maxKeys: 100000,
          fairEscrow: { limit: 4, windowMs: 60000, weights: {} }
        }
      ])
    }))

  it.effect("federatedFairEscrow loads; region defaults to the server's, key to the name, prefix to tk:rfp", () =>
    Effect.gen(function*() {
      const set = yield* load(FEDERATED_FAIR_ESCROW, "ap-south")
      expect(set.policies).toEqual([
        {
          kind: "fair",
          name: "global-llm",
          prefix: "global-llm",
          maxKeys: 100000,
          fairEscrow: { limit: 1000000, windowMs: 60000, weights: { "tenant-a": 2, "tenant-b": 0.5 } },
          federation: { region: "us-east", key: "llm-budget", prefix: "tk:rfp" }
        },
        {
          kind: "fair",
          name: "fe",
          prefix: "fe",
          maxKeys: 100000,
          fairEscrow: { limit: 100, windowMs: 1000, weights: {} },
          federation: { region: "ap-south", key: "fe", prefix: "tk:rfp" }
        }
      ])
      const plain = yield* load(FEDERATED_FAIR_ESCROW)
      expect(plain.policies[1]).toMatchObject({ federation: { region: "default" } })
    }))

  it.effect("federated loads (an empty block takes every default)", () =>
    Effect.gen(function*() {
      const set = yield* load(FEDERATED)
      expect(set.policies.map((p) => p.kind === "limiter" ? p.federated : undefined)).toEqual([
        { batch: 32, region: "eu-west", prefix: "tk:fed" },
        { batch: 16, region: "default", prefix: "tk:fed" }
      ])
    }))

  const bad: ReadonlyArray<readonly [string, string, string, RegExp]> = [
    [
      "a missing limit",
      "limiters:\n  f:\n    fairEscrow: { windowMs: 1000 }\n",
      "limiters.f.fairEscrow.limit",
      /required/
    ],
    [
      "a missing window",
      "limiters:\n  f:\n    fairEscrow: { limit: 5 }\n",
      "limiters.f.fairEscrow.windowMs",
      /required/
    ],
    [
      "a weight of 0",
      "limiters:\n  f:\n    fairEscrow:\n      limit: 5\n      windowMs: 1000\n      weights: { t: 0 }\n",
      "limiters.f.fairEscrow.weights.t",
      /> 0/
    ],
    [
      "weights that are not a map",
      "limiters:\n  f:\n    fairEscrow: { limit: 5, windowMs: 1000, weights: 3 }\n",
      "limiters.f.fairEscrow.weights",
      /map of tenant to weight/
    ],
    [
      "a bad Cost Room bound",
      "limiters:\n  f:\n    federatedFairEscrow: { limit: 5, windowMs: 1000, costRoomMaxKeys: -1 }\n",
      "limiters.f.federatedFairEscrow.costRoomMaxKeys",
      /positive integer/
    ],
    [
      "a region on a local escrow",
      "limiters:\n  f:\n    fairEscrow: { limit: 5, windowMs: 1000, region: us }\n",
      "limiters.f.fairEscrow.region",
      /unknown field/
    ],
    [
      "an empty region",
      "limiters:\n  f:\n    federatedFairEscrow: { limit: 5, windowMs: 1000, region: \"\" }\n",
      "limiters.f.federatedFairEscrow.region",
      /non-empty/
    ],
    [
      "a fractional limit",
      "limiters:\n  f:\n    fairEscrow: { limit: 2.5, windowMs: 1000 }\n",
      "limiters.f.fairEscrow.limit",
      /positive integer/
    ],
    [
      "a window past 100 years",
      "limiters:\n  f:\n    fairEscrow: { limit: 5, windowMs: 4000000000000 }\n",
      "limiters.f.fairEscrow.windowMs",
      /100 years/
    ],
    [
      "two kind blocks",
      "limiters:\n  f:\n    fairEscrow: { limit: 5, windowMs: 1000 }\n    federatedFairEscrow: { limit: 5, windowMs: 1000 }\n",
      "limiters.f",
      /at most one/
    ],
    [
      "a strategy beside the block",
      "limiters:\n  f:\n    strategy: gcra\n    fairEscrow: { limit: 5, windowMs: 1000 }\n",
      "limiters.f.strategy",
      /unknown field/
    ]
  ]
  for (const [what, text, path, reason] of bad) {
    it.effect(`fails on ${what} with a PolicyError naming ${path}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(load(text))
        expect(error._tag).toBe("PolicyError")
        expect(error.path).toBe(path)
        expect(error.reason).toMatch(reason)
        expect(error.source).toBe("example.yaml")
      }))
  }

  it.effect("a fair policy written in code meets the same rules (PolicyError naming the path)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PolicySet.make([{
        kind: "fair",
        name: "f",
        prefix: "f",
        maxKeys: 10,
        fairEscrow: { limit: 5, windowMs: 1000, weights: { t: 0 } }
      }]))
      expect(error.path).toBe("limiters.f.fairEscrow.weights.t")
      const region = yield* Effect.flip(PolicySet.make([{
        kind: "fair",
        name: "f",
        prefix: "f",
        maxKeys: 10,
        fairEscrow: { limit: 5, windowMs: 1000, weights: {} },
        federation: { region: "", key: "f", prefix: "tk:rfp" }
      }]))
      expect(region.path).toBe("limiters.f.federation.region")
    }))
})
