/**
 * Fleet leasing (tier 2): a client leases a share of a `federated:` policy's global per-window budget
 * from a ThrottleKit server (`Fleet.Reserve`) and spends it locally, with no round trip per request.
 *
 * 1. Raw reservations: a grant, a partial grant, a refusal with a retry time.
 * 2. A leased limiter shared by 20 fibers: checks are answered from local credits; only when they run
 *    short does one fiber call Reserve (the others wait for that one refresh, never start their own).
 * 3. The next window: the budget is back.
 *
 *   npx tsx examples/fleet.ts                                  our server, in this process (memory store)
 *   npx tsx examples/fleet.ts --service host:port [--policy NAME]
 *
 * Without `--service` the example starts our server on a free loopback port serving the policy below.
 * With it, the server must serve a `federated:` policy (default name "fleet-api") from a loopback address
 * (the Fleet door answers loopback callers only unless the server has a `--fleet-secret`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { PolicyFile } from "throttlekit-effect"
import { Fleet, FleetBackend, type Lease } from "throttlekit-effect/fleet"
import { embeddedServer, isMain, runTag } from "./support.js"

/** The embedded server's policy: 20 units per second for the whole fleet, leased 5 at a time by its checks. */
const embeddedConfig = `
limiters:
  fleet-api:
    strategy: fixedWindow
    limit: 20
    windowMs: 1000
    federated:
      batch: 5
`

const showLease = (label: string, lease: Lease): string =>
  `${label.padEnd(28)} capacity=${lease.capacity} limit=${lease.limit} expires in ${
    Math.max(0, lease.expiryMs - Date.now())
  } ms` + (lease.refused ? ` (refused: retry after ${lease.retryAfterMs} ms)` : "")

/** Our server in this process on a free loopback port, serving the policy above. */
const embeddedFleetServer = Effect.flatMap(PolicyFile.parse(embeddedConfig, "examples/fleet.ts"), embeddedServer)

const program = (target: string, policy: string) =>
  Effect.gen(function*() {
    const fleet = yield* Fleet
    const domain = `demo-${runTag()}`
    // Start at the top of a window, so that the numbers below are not split across two windows.
    yield* Effect.sleep(1000 - (Date.now() % 1000) + 10)

    yield* Console.log(`1. raw reservations on "${policy}" (domain ${domain}) at ${target}:`)
    yield* Console.log(showLease("  reserve wants=12", yield* fleet.reserve(policy, { domain, wants: 12 })))
    yield* Console.log(showLease("  reserve wants=12 (partial)", yield* fleet.reserve(policy, { domain, wants: 12 })))
    yield* Console.log(showLease("  reserve wants=1", yield* fleet.reserve(policy, { domain, wants: 1 })))

    yield* Console.log(`2. a leased limiter (batch 5) shared by 20 fibers, 2 checks each, in the next window:`)
    yield* Effect.sleep(1000 - (Date.now() % 1000) + 10)
    const limiter = yield* fleet.leased(policy, { domain: `${domain}-leased`, batch: 5 })
    const decisions = yield* Effect.all(
      Array.from({ length: 20 }, () => Effect.zip(limiter.check(), limiter.check())),
      { concurrency: "unbounded" }
    ).pipe(Effect.map((pairs) => pairs.flat()))
    const allowed = decisions.filter((d) => d.allowed).length
    const denial = decisions.find((d) => !d.allowed)
    yield* Console.log(
      `  ${allowed} of 40 allowed (the budget is ${decisions[0]?.limit} per window); ` +
        `${limiter.credits()} credits left in hand` +
        (denial === undefined ? "" : `; the refusal says retry after ${denial.retryAfterMs} ms`)
    )

    yield* Console.log("3. the next window:")
    yield* Effect.sleep(Math.max(0, (limiter.expiresAt() ?? Date.now()) - Date.now()) + 10)
    const again = yield* limiter.check()
    yield* Console.log(`  check -> ${again.allowed ? "ALLOW" : "DENY"} (remaining ${again.remaining} in hand)`)
    yield* Console.log(`fleet example done: ${allowed} of 40 leased checks were allowed`)
  })

/** Runs the example with `argv` (the dispatcher's entry). */
export const run = (argv: ReadonlyArray<string>): void => {
  let service: string | undefined
  let policy = "fleet-api"
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === "--service" && argv[i + 1] !== undefined) service = argv[++i]
    else if (arg === "--policy" && argv[i + 1] !== undefined) policy = argv[++i]!
    else {
      console.error(`unknown argument ${JSON.stringify(arg)}\nflags: [--service host:port] [--policy NAME]`)
      process.exitCode = 2
      return
    }
  }
  const main = Effect.scoped(Effect.gen(function*() {
    const target = service ?? (yield* embeddedFleetServer)
    yield* Console.log(
      service === undefined
        ? `using our server in this process at ${target} (memory store)`
        : `using the ThrottleKit server at ${target}`
    )
    yield* program(target, policy).pipe(Effect.provide(FleetBackend.layer({ target, deadlineMs: 5000 })))
  }))
  NodeRuntime.runMain(main)
}

if (isMain(import.meta.url)) run(process.argv.slice(2))
