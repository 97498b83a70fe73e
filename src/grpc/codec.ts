/**
 * The bridge from protobuf-es descriptors (generated from `proto/`) to grpc-js: method paths, binary
 * serializers and `ServiceDefinition`s, derived from the descriptors so they cannot drift from the proto.
 * A server's request decoder never throws: a body that is not a valid message (bad protobuf, or a string
 * field that is not UTF-8) decodes to a `MalformedRequest`, which the server answers INVALID_ARGUMENT
 * (grpc-js would answer a throwing decoder INTERNAL).
 *
 * @since 0.1.0
 */
import type { DescMessage, DescMethod, DescService, Message, MessageShape } from "@bufbuild/protobuf"
import { fromBinary, toBinary } from "@bufbuild/protobuf"
import type * as grpc from "@grpc/grpc-js"
import { type CheckRequest, CheckRequestSchema } from "./generated/throttlekit_pb.js"

/**
 * The full gRPC path of a method: `/package.Service/Method`.
 *
 * @since 0.1.0
 * @category utils
 */
export const methodPath = (method: DescMethod): string => `/${method.parent.typeName}/${method.name}`

/**
 * Encodes a message of `schema` to the bytes gRPC sends.
 *
 * @since 0.1.0
 * @category codecs
 */
export const serializer = <D extends DescMessage>(schema: D) => (message: MessageShape<D>): Buffer => {
  const bytes = toBinary(schema, message)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** The largest cost `encodeCheckRequest` writes itself: beyond it (or below 0) it defers to `toBinary`. */
const MAX_PLAIN_VARINT = BigInt(Number.MAX_SAFE_INTEGER)

/** Writes `value` (a whole number from 0 to 2^53 - 1) as a protobuf varint at `at`; the offset after it. */
const writeVarint = (buffer: Buffer, at: number, value: number): number => {
  let rest = value
  let offset = at
  while (rest >= 0x80) {
    buffer[offset++] = (rest % 0x80) | 0x80
    rest = Math.floor(rest / 0x80)
  }
  buffer[offset++] = rest
  return offset
}

/** Writes a string field (tag, length, UTF-8 bytes) at `at`, unless empty (proto3 leaves it out). */
const writeString = (buffer: Buffer, at: number, tag: number, value: string, bytes: number): number => {
  if (bytes === 0) return at
  buffer[at] = tag
  const offset = writeVarint(buffer, at + 1, bytes)
  return offset + buffer.write(value, offset, "utf8")
}

/**
 * Encodes a `CheckRequest` (the Service door's hot path) without protobuf-es's reflection: the same bytes
 * `toBinary` writes (fields in number order, empty strings and a zero cost left out), about a tenth of
 * its cost. A cost outside 0 to 2^53 - 1 is left to `toBinary`.
 *
 * @since 0.3.0
 * @category codecs
 */
export const encodeCheckRequest = (request: CheckRequest): Buffer => {
  const { cost, key, policy } = request
  if (cost < 0n || cost > MAX_PLAIN_VARINT) return serializer(CheckRequestSchema)(request)
  const policyBytes = Buffer.byteLength(policy, "utf8")
  const keyBytes = Buffer.byteLength(key, "utf8")
  // Each field: a one-byte tag, a varint of at most 8 bytes (below 2^53), its bytes.
  const buffer = Buffer.allocUnsafe(policyBytes + keyBytes + 27)
  let at = writeString(buffer, 0, 0x0a, policy, policyBytes)
  at = writeString(buffer, at, 0x12, key, keyBytes)
  if (cost !== 0n) {
    buffer[at] = 0x18
    at = writeVarint(buffer, at + 1, Number(cost))
  }
  return buffer.subarray(0, at)
}

const isCheckRequest = (message: Message): message is CheckRequest => message.$typeName === CheckRequestSchema.typeName

/**
 * The serializer the client's calls use: `encodeCheckRequest` for a `CheckRequest`, else `serializer`.
 *
 * @since 0.3.0
 * @category codecs
 */
export const callSerializer = <D extends DescMessage>(schema: D): (message: MessageShape<D>) => Buffer => {
  const generic = serializer(schema)
  if (schema.typeName !== CheckRequestSchema.typeName) return generic
  return (message) => isCheckRequest(message) ? encodeCheckRequest(message) : generic(message)
}

/**
 * Decodes gRPC bytes into a message of `schema` (grpc-js turns a decoding exception into a status).
 *
 * @since 0.1.0
 * @category codecs
 */
export const deserializer = <D extends DescMessage>(schema: D) => (bytes: Buffer): MessageShape<D> =>
  fromBinary(schema, bytes)

/**
 * A request body that is not a valid message of its method's input type. `reason` says what was wrong
 * without repeating any of the bytes.
 *
 * @since 0.2.0
 * @category models
 */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** Why decoding failed, in words of our own (never the bytes). */
const malformedReason = (schema: DescMessage, error: unknown): string =>
  typeof error === "object" && error !== null && "code" in error && error.code === "ERR_ENCODING_INVALID_ENCODED_DATA"
    ? `a string field of ${schema.typeName} is not valid UTF-8`
    : `the body is not a valid ${schema.typeName} protobuf message`

/**
 * Decodes a request for a server: the message, or a `MalformedRequest` when the bytes are not one (proto3
 * strings must be UTF-8; protobuf-es refuses them otherwise). Never throws.
 *
 * @since 0.2.0
 * @category codecs
 */
export const requestDecoder =
  <D extends DescMessage>(schema: D) => (bytes: Buffer): MessageShape<D> | MalformedRequest => {
    try {
      return fromBinary(schema, bytes)
    } catch (error) {
      return new MalformedRequest(malformedReason(schema, error))
    }
  }

/**
 * The grpc-js definition of one method, for a server: its requests decode with `requestDecoder`.
 *
 * @since 0.1.0
 * @category definitions
 */
export const methodDefinition = (method: DescMethod): grpc.MethodDefinition<Message | MalformedRequest, Message> => ({
  path: methodPath(method),
  originalName: method.localName,
  requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
  responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
  // A `MalformedRequest` only ever comes out of the decoder; it is never a request to send.
  requestSerialize: (request) =>
    request instanceof MalformedRequest ? Buffer.alloc(0) : serializer(method.input)(request),
  requestDeserialize: requestDecoder(method.input),
  responseSerialize: serializer(method.output),
  responseDeserialize: deserializer(method.output)
})

/**
 * The grpc-js `ServiceDefinition` of a generated service for a server, keyed by each method's local name.
 *
 * @since 0.1.0
 * @category definitions
 */
export const serviceDefinition = (service: DescService): grpc.ServiceDefinition => {
  const definition: Record<string, grpc.MethodDefinition<Message | MalformedRequest, Message>> = {}
  for (const method of service.methods) definition[method.localName] = methodDefinition(method)
  return definition
}
