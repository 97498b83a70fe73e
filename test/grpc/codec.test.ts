/**
 * The client's hand-written `CheckRequest` encoder (`encodeCheckRequest`, the Service door's hot path)
 * writes exactly the bytes protobuf-es's `toBinary` writes, for any policy and key (empty, non-ASCII,
 * long enough for a multi-byte length) and any cost (0, small, up to 2^53 - 1, and the costs it leaves to
 * `toBinary`: negative, beyond 2^53); and what it writes decodes back to the same request.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { callSerializer, encodeCheckRequest } from "../../src/grpc/codec.js"
import { CheckManyRequestSchema, CheckRequestSchema } from "../../src/grpc/generated/throttlekit_pb.js"

const text = fc.oneof(
  fc.constant(""),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ minLength: 100, maxLength: 400 })
)

const cost = fc.oneof(
  fc.constantFrom(0n, 1n, 127n, 128n, 16_383n, 16_384n, BigInt(Number.MAX_SAFE_INTEGER)),
  fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) }),
  fc.bigInt({ min: -(2n ** 63n), max: -1n }),
  fc.bigInt({ min: BigInt(Number.MAX_SAFE_INTEGER) + 1n, max: 2n ** 63n - 1n })
)

describe("encodeCheckRequest", () => {
  it("writes the bytes toBinary writes, and they decode to the same request", () => {
    fc.assert(
      fc.property(text, text, cost, (policy, key, c) => {
        const request = create(CheckRequestSchema, { policy, key, cost: c })
        const bytes = encodeCheckRequest(request)
        expect(Buffer.from(bytes).equals(Buffer.from(toBinary(CheckRequestSchema, request)))).toBe(true)
        const back = fromBinary(CheckRequestSchema, bytes)
        expect([back.policy, back.key, back.cost]).toEqual([policy, key, c])
      }),
      { numRuns: 2000 }
    )
  })

  it("is what the client sends for a Check, and only for a Check", () => {
    const check = create(CheckRequestSchema, { policy: "api", key: "user-ü", cost: 300n })
    expect(callSerializer(CheckRequestSchema)(check)).toEqual(encodeCheckRequest(check))
    const many = create(CheckManyRequestSchema, { policy: "api", keys: ["a", "b"], cost: 2n })
    expect(Buffer.from(callSerializer(CheckManyRequestSchema)(many)))
      .toEqual(Buffer.from(toBinary(CheckManyRequestSchema, many)))
  })
})
