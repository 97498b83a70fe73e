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
