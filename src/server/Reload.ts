/**
 * The server's live reload: the `RateLimiter` it serves is the front of its current generation, swapped
 * whole once a new policy set has been built. A generation is the store of one policy set with its
 * wrappers and the front over them, built in a scope of its own.
 *
 * - The new set comes validated (the whole file decoded and checked first: `PolicyFile.load`); `refuse`
 *   then names what this server cannot take without a restart, and only then is the generation built. A
 *   refusal, or a failed build, changes nothing.
 * - The swap is one assignment: a call takes the generation current when it starts and finishes on it,
 *   so calls in flight finish on the old one. The old generation's scope (background lease refreshes,
 *   idle sweeps) closes `graceMs` later, or with the server.
 * - Reloads run one at a time.
 *
 * The served service reads the current front on each call: one property read and one call more than
 * the front itself, nothing allocated.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { sameDefinition } from "../internal/sameDefinition.js"
import type { PolicySet } from "../PolicySet.js"
import type { RateLimiterService } from "../services/RateLimiter.js"

/**
 * A reload the server did not apply: the first reason, on one line. Nothing changed.
 *
 * @since 0.3.0
 * @category errors
 */
export class ReloadRefused extends Schema.TaggedError<ReloadRefused>()("ReloadRefused", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/**
 * What a reload applied, by policy name (in the new file's order; removed ones in the old file's).
 *
 * @since 0.3.0
 * @category models
 */
export interface ReloadSummary {
  /** Same name, another definition: served from fresh state on the Memory store. */
  readonly changed: ReadonlyArray<string>
  readonly added: ReadonlyArray<string>
  /** No longer served: the next call answers `PolicyNotFound`. */
  readonly removed: ReadonlyArray<string>
  /** The same definition: its state is kept. */
  readonly unchanged: ReadonlyArray<string>
}

/**
 * How `after` differs from `before`, policy by policy (definitions compared deeply).
 *
 * @since 0.3.0
 * @category utils
 */
export const summarize = (before: PolicySet, after: PolicySet): ReloadSummary => {
  const changed: Array<string> = []
  const added: Array<string> = []
  const unchanged: Array<string> = []
  for (const policy of after) {
    const old = before.get(policy.name)
    if (old._tag === "None") added.push(policy.name)
    else if (sameDefinition(old.value, policy)) unchanged.push(policy.name)
    else changed.push(policy.name)
  }
  const removed = before.names.filter((name) => !after.has(name))
  return { changed, added, removed, unchanged }
}

/** `n thing` or `n things`. */
const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`

/**
 * The one line logged for an applied reload, e.g.
 * `throttlekit-effect reloaded policies.yaml: 3 policies (1 changed: api; 1 added: llm; 1 removed: old; 1 unchanged)`.
 *
 * @since 0.3.0
 * @category utils
 */
export const appliedLine = (source: string, summary: ReloadSummary, total: number): string => {
  const named = (label: string, names: ReadonlyArray<string>) =>
    names.length === 0 ? [] : [`${names.length} ${label}: ${names.join(", ")}`]
  const parts = [
    ...named("changed", summary.changed),
    ...named("added", summary.added),
    ...named("removed", summary.removed),
    `${summary.unchanged.length} unchanged`
  ]
  return `throttlekit-effect reloaded ${source}: ${count(total, "policy", "policies")} (${parts.join("; ")})`
}

/**
 * The one line logged for a refused reload: the first problem, and that nothing changed.
 *
 * @since 0.3.0
 * @category utils
 */
export const refusedLine = (source: string, reason: string): string =>
  `throttlekit-effect reload of ${source} refused, nothing changed: ${reason.replace(/\s*\n\s*/g, " ").trim()}`

/**
 * The reload of a running server.
 *
 * @since 0.3.0
 * @category models
 */
export interface Reloader {
  /** The policies served now. */
  readonly policies: () => PolicySet
  /** Serves `policies` from the next call on, or refuses (nothing changed). */
  readonly reload: (policies: PolicySet) => Effect.Effect<ReloadSummary, ReloadRefused>
}

/**
 * The running server's reload.
 *
 * @since 0.3.0
 * @category tags
 */
export class ServerReload extends Context.Tag("throttlekit-effect/server/ServerReload")<ServerReload, Reloader>() {}

/**
 * What the reload needs from the server.
 *
 * @since 0.3.0
 * @category models
 */
export interface GenerationsOptions {
  /** The policies the server started with. */
  readonly first: PolicySet
  /**
   * Builds the front of `policies` (the policies served before are `before`) in the scope given, which
   * lives as long as the generation. A failure refuses the reload.
   */
  readonly build: (
    policies: PolicySet,
    before: PolicySet | undefined
  ) => Effect.Effect<RateLimiterService, ReloadRefused, Scope.Scope>
  /** Why the server cannot take `after` without a restart, if it cannot (checked before building). */
  readonly refuse: (before: PolicySet, after: PolicySet) => string | undefined
  /** How long an old generation's scope outlives the swap, in ms. */
  readonly graceMs: number
}

/** One generation: its policies, its front and the scope its parts live in. */
interface Generation {
  readonly policies: PolicySet
  readonly front: RateLimiterService
  readonly scope: Scope.CloseableScope
}

/** A `RateLimiterService` that hands every call to the front of `current()`'s generation. */
const following = (live: { generation: Generation }): RateLimiterService => {
  const front = () => live.generation.front
  return {
    backend: front().backend,
    get policies() {
      return front().policies
    },
    resolve: (policy, operation) => front().resolve(policy, operation),
    check: (policy, key, cost) => front().check(policy, key, cost),
    checkWithin: (policy, key, wait, cost) => front().checkWithin(policy, key, wait, cost),
    checkMany: (policy, keys, cost) => front().checkMany(policy, keys, cost),
    peek: (policy, key) => front().peek(policy, key),
    forecast: (policy, key, cost) => front().forecast(policy, key, cost),
    checkAll: (checks) => front().checkAll(checks),
    debit: (policy, key, tokens) => front().debit(policy, key, tokens),
    debitWithin: (policy, key, wait, tokens) => front().debitWithin(policy, key, wait, tokens),
    admit: (policy, key, options) => front().admit(policy, key, options),
    leases: {
      get ttlMs() {
        return front().leases.ttlMs
      },
      acquire: (policy, key, options) => front().leases.acquire(policy, key, options),
      release: (leaseId, dropped) => front().leases.release(leaseId, dropped),
      heartbeat: (leaseIds) => front().leases.heartbeat(leaseIds)
    }
  }
}

/**
 * The served `RateLimiter` (following the current generation) and its `Reloader`, for the life of the
 * scope: every generation's scope is a child of it.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  options: GenerationsOptions
): Effect.Effect<{ readonly limiter: RateLimiterService; readonly reloader: Reloader }, ReloadRefused, Scope.Scope> =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    const generation = (policies: PolicySet, before: PolicySet | undefined) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
        const front = yield* Effect.onError(
          Scope.extend(options.build(policies, before), scope),
          (cause) => Scope.close(scope, Exit.failCause(cause))
        )
        return { policies, front, scope }
      })
    const live = { generation: yield* generation(options.first, undefined) }
    const oneAtATime = yield* Effect.makeSemaphore(1)

    const retire = (old: Generation) =>
      Effect.forkIn(
        Effect.zipRight(Effect.sleep(options.graceMs), Scope.close(old.scope, Exit.void)),
        parent
      )

    const reload: Reloader["reload"] = (policies) =>
      oneAtATime.withPermits(1)(Effect.gen(function*() {
        const old = live.generation
        const refusal = options.refuse(old.policies, policies)
        if (refusal !== undefined) return yield* new ReloadRefused({ reason: refusal })
        const next = yield* generation(policies, old.policies)
        live.generation = next
        yield* retire(old)
        return summarize(old.policies, policies)
      }))

    return {
      limiter: following(live),
      reloader: { policies: () => live.generation.policies, reload }
    }
  })
