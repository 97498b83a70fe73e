/**
 * The standard `grpc.health.v1.Health` service: SERVING for "" and every served service while the
 * server runs, NOT_SERVING once it drains, NOT_FOUND for a name it does not serve. `Watch` sends the
 * current status and stays open until the call or the server ends.
 *
 * @since 0.1.0
 */
import { status as Status } from "@grpc/grpc-js"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { MAX_SHOWN_BYTES, truncateUtf8 } from "../Errors.js"
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../grpc/generated/health_pb.js"
import { statusError } from "../grpc/status.js"
import { implement, type ServedService } from "./Service.js"

/**
 * The health service over the served service names; `draining` tells whether shutdown has begun.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (served: ReadonlyArray<string>, draining: Effect.Effect<boolean>): ServedService => {
  const known = new Set(["", ...served])
  const current = Effect.map(draining, (isDraining) => isDraining ? ServingStatus.NOT_SERVING : ServingStatus.SERVING)
  return implement(Health, {
    check: (request) =>
      known.has(request.service)
        ? Effect.map(current, (status) => ({ status }))
        : Effect.fail(
          statusError(
            Status.NOT_FOUND,
            `unknown service ${JSON.stringify(truncateUtf8(request.service, MAX_SHOWN_BYTES))}`
          )
        ),
    watch: (request) =>
      Stream.concat(
        known.has(request.service)
          ? Stream.fromEffect(Effect.map(current, (status) => ({ status })))
          : Stream.make({ status: ServingStatus.SERVICE_UNKNOWN }),
        Stream.never
      )
  })
}
