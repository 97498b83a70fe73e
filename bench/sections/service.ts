/**
 * Service: the Service door's check against our gRPC server (Memory store, in its own process), serial
 * and 64 in flight, against raw `@grpc/grpc-js` unary calls to the same server with the same descriptors
 * and codecs (the floor: no deadline, no validation, no typed errors). Each side has its own client;
 * the sides take turns. Keys rotate over 10k. The Effect floor row runs the raw call inside
 * `Effect.tryPromise` in the same Effect loop as ours: the gap between it and ours is the door's own cost.
 * 64 in flight means 64 callers (fibers for Effect, async loops for the raw client), each calling one
 * after another; a last c64 row starts a root fiber per call (the runtime's per-fiber cost, not ours).
 * Ours runs with its defaults, so under that load it coalesces checks into `CheckMany` batches (see
 * `src/grpc/CoalescedChecks.ts`); the raw client sends one `Check` per call.
 *
 * `service.many100`: one operation is 100 decisions on 100 keys, by one caller: one `checkMany` (one
 * `CheckMany` RPC), or 100 `check`s one after another (100 `Check` RPCs), beside a raw grpc-js
 * `CheckMany` of the same 100 keys. `service.checkMany100VsChecks` is the first over the second
 * (target ≥ 10); `service.serial.vsRaw` the serial check over the raw client's (target ≥ 0.95). Beside
 * the raw client, the serial scenario runs it with a 1 s deadline on every call, as ours carries:
 * `service.serial.deadlineVsRaw` is what a deadline alone costs a grpc-js call, and
 * `service.serial.vsDeadlineFloor` is ours over that floor (raw grpc-js with the one per-call option we
 * need). Ours starts its calls on the channel itself (`sendUnary`), without grpc-js's per-call client
 * layer that the raw client goes through, so it can beat that floor.
 */
import { create } from "@bufbuild/protobuf"
import * as grpc from "@grpc/grpc-js"
import { Effect, ManagedRuntime } from "effect"
import { deserializer, methodPath, serializer } from "../../src/grpc/codec.js"
import {
  type CheckManyResponse,
  type CheckResponse,
  RateLimiter as RateLimiterRpc
} from "../../src/grpc/generated/throttlekit_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { sharedChildServer } from "../childServer.js"
import { effectCallers, effectCallersFiberPerCall, effectSerial } from "../effectWorkloads.js"
import { measure, type Plan, promiseCallers, promiseSerial, type Result, type Workload } from "../harness.js"
import { KEY_COUNT, keyOf, keys, POLICY } from "../policies.js"
import { cpuRatio, ratio, type Section, type SectionOutcome } from "../section.js"

const OURS = "ServiceBackend.check"
const RAW = "raw grpc-js unary Check"
const RAW_DEADLINE = "raw grpc-js unary Check, with a deadline"
const FLOOR = "Effect.tryPromise(raw grpc-js Check)"
const OURS_FIBER_PER_CALL = "ServiceBackend.check, a root fiber per call"
const MANY = "checkMany(100 keys)"
const SEQUENTIAL = "100 × check, sequential"
const RAW_MANY = "raw grpc-js unary CheckMany (100 keys)"

/** The keys of one `checkMany`. */
const BATCH = 100

/** `KEY_COUNT / BATCH` batches of 100 consecutive keys, built once: operation `i` takes batch `i % count`. */
const batches: ReadonlyArray<ReadonlyArray<string>> = Array.from(
  { length: KEY_COUNT / BATCH },
  (_, b) => keys.slice(b * BATCH, (b + 1) * BATCH)
)
const batchOf = (i: number): ReadonlyArray<string> => batches[i % batches.length]!

/** A plain grpc-js client calling Check with the generated descriptors and our codecs. */
const rawClient = (target: string) => {
  const client = new grpc.Client(target, grpc.credentials.createInsecure())
  const method = RateLimiterRpc.method.check
  const path = methodPath(method)
  const serialize = serializer(method.input)
  const deserialize = deserializer(method.output)
  const metadata = new grpc.Metadata()
  // `deadlineMs`: the call carries a deadline (a timer and a grpc-timeout header), as every call of ours.
  const check = (key: string, deadlineMs?: number): Promise<CheckResponse> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        path,
        serialize,
        deserialize,
        create(method.input, { policy: POLICY, key, cost: 1n }),
        metadata,
        deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs },
        (error, response) => {
          if (error !== null || response === undefined) reject(error ?? new Error("empty response"))
          else resolve(response)
        }
      )
    })
  const many = RateLimiterRpc.method.checkMany
  const manyPath = methodPath(many)
  const serializeMany = serializer(many.input)
  const deserializeMany = deserializer(many.output)
  const checkMany = (batch: ReadonlyArray<string>): Promise<CheckManyResponse> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        manyPath,
        serializeMany,
        deserializeMany,
        create(many.input, { policy: POLICY, keys: [...batch], cost: 1n }),
        metadata,
        (error, response) => {
          if (error !== null || response === undefined) reject(error ?? new Error("empty response"))
          else resolve(response)
        }
      )
    })
  return { check, checkMany, close: () => client.close() }
}

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const server = await sharedChildServer()
  const raw = rawClient(server.target)
  const runtime = ManagedRuntime.make(ServiceBackend.layer({ target: server.target }))
  try {
    const limiter = await runtime.runPromise(RateLimiter)
    const verifyOurs = () =>
      runtime.runPromise(limiter.check(POLICY, keyOf(0))).then((decision) => {
        if (!decision.allowed) throw new Error(`${OURS}: the first check was denied`)
      })
    const verifyRaw = () =>
      raw.check(keyOf(0)).then((response) => {
        if (response.decision?.allowed !== true) throw new Error(`${RAW}: the first check was denied`)
      })
    const results: Array<Result> = []
    const serial: ReadonlyArray<Workload> = [
      { ...effectSerial(OURS, runtime.runPromise, (i) => limiter.check(POLICY, keyOf(i))), verify: verifyOurs },
      { ...promiseSerial(RAW, false, (i) => raw.check(keyOf(i))), verify: verifyRaw },
      effectSerial(FLOOR, Effect.runPromise, (i) => Effect.tryPromise(() => raw.check(keyOf(i))), false),
      promiseSerial(RAW_DEADLINE, false, (i) => raw.check(keyOf(i), 1000))
    ]
    results.push(...(await measure("service.serial", serial, plan)))
    const c64: ReadonlyArray<Workload> = [
      { ...effectCallers(OURS, runtime.runFork, (i) => limiter.check(POLICY, keyOf(i))), verify: verifyOurs },
      { ...promiseCallers(RAW, false, (i) => raw.check(keyOf(i))), verify: verifyRaw },
      effectCallers(FLOOR, Effect.runFork, (i) => Effect.tryPromise(() => raw.check(keyOf(i))), false),
      effectCallersFiberPerCall(OURS_FIBER_PER_CALL, runtime.runFork, (i) => limiter.check(POLICY, keyOf(i)))
    ]
    results.push(...(await measure("service.c64", c64, plan)))
    const verifyAll = (impl: string) => (decisions: ReadonlyArray<{ readonly allowed: boolean }>) => {
      if (decisions.length !== BATCH || !decisions.every((d) => d.allowed)) {
        throw new Error(`${impl}: not ${BATCH} allowed decisions`)
      }
    }
    const sequential = (i: number) => Effect.forEach(batchOf(i), (key) => limiter.check(POLICY, key))
    const many100: ReadonlyArray<Workload> = [
      {
        ...effectSerial(MANY, runtime.runPromise, (i) => limiter.checkMany(POLICY, batchOf(i))),
        verify: () => runtime.runPromise(limiter.checkMany(POLICY, batchOf(0))).then(verifyAll(MANY))
      },
      {
        ...effectSerial(SEQUENTIAL, runtime.runPromise, sequential),
        verify: () => runtime.runPromise(sequential(0)).then(verifyAll(SEQUENTIAL))
      },
      {
        ...promiseSerial(RAW_MANY, false, (i) => raw.checkMany(batchOf(i))),
        verify: () =>
          raw.checkMany(batchOf(0)).then((response) =>
            verifyAll(RAW_MANY)(response.decisions.map((d) => ({ allowed: d.allowed })))
          )
      }
    ]
    results.push(...(await measure("service.many100", many100, plan)))
    return {
      results,
      comparisons: [
        ratio(results, "service.c64.vsRaw", "service.c64", OURS, RAW, {
          target: { op: ">=", value: 0.9 },
          headline: true
        }),
        ratio(results, "service.c64.vsEffectFloor", "service.c64", OURS, FLOOR),
        ratio(results, "service.c64.effectFloorVsRaw", "service.c64", FLOOR, RAW),
        ratio(results, "service.c64.fiberPerCall.vsRaw", "service.c64", OURS_FIBER_PER_CALL, RAW),
        ratio(results, "service.serial.vsRaw", "service.serial", OURS, RAW, {
          target: { op: ">=", value: 0.95 },
          headline: true
        }),
        ratio(results, "service.serial.vsEffectFloor", "service.serial", OURS, FLOOR),
        ratio(results, "service.serial.effectFloorVsRaw", "service.serial", FLOOR, RAW),
        ratio(results, "service.serial.deadlineVsRaw", "service.serial", RAW_DEADLINE, RAW),
        ratio(results, "service.serial.vsDeadlineFloor", "service.serial", OURS, RAW_DEADLINE),
        cpuRatio(results, "service.serial.cpu.vsRaw", "service.serial", OURS, RAW),
        cpuRatio(results, "service.serial.cpu.vsEffectFloor", "service.serial", OURS, FLOOR),
        ratio(results, "service.checkMany100VsChecks", "service.many100", MANY, SEQUENTIAL, {
          target: { op: ">=", value: 10 },
          headline: true
        }),
        ratio(results, "service.many100.vsRaw", "service.many100", MANY, RAW_MANY)
      ],
      skipped: []
    }
  } finally {
    await runtime.dispose()
    raw.close()
    // The server is shared with the leasing section; main stops it at the end.
  }
}

/** The service section. */
export const service: Section = { name: "service", run }
