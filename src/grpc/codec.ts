/**
 * The bridge from protobuf-es descriptors (generated from `proto/`) to grpc-js: method paths, binary
 * serializers and `ServiceDefinition`s, derived from the descriptors so they cannot drift from the proto.
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
 * The grpc-js definition of one method.
 *
 * @since 0.1.0
 * @category definitions
 */
export const methodDefinition = (method: DescMethod): grpc.MethodDefinition<Message, Message> => ({
  path: methodPath(method),
  originalName: method.localName,
  requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
  responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
  requestSerialize: serializer(method.input),
  requestDeserialize: deserializer(method.input),
  responseSerialize: serializer(method.output),
  responseDeserialize: deserializer(method.output)
})

/**
 * The grpc-js `ServiceDefinition` of a generated service, keyed by each method's local name.
 *
 * @since 0.1.0
 * @category definitions
 */
export const serviceDefinition = (service: DescService): grpc.ServiceDefinition => {
  const definition: Record<string, grpc.MethodDefinition<Message, Message>> = {}
  for (const method of service.methods) definition[method.localName] = methodDefinition(method)
  return definition
}
