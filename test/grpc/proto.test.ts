/**
 * The proto is the wire: these tests pin it to CONTRACT.md §2 (every message, field number and type,
 * reserved ranges, services) and check that the committed generated code is what the proto generates.
 */
import type { DescField, DescMessage } from "@bufbuild/protobuf"
import { FieldDescriptorProto_Type as FieldType } from "@bufbuild/protobuf/wkt"
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { file_health } from "../../src/grpc/generated/health_pb.js"
import { file_throttlekit } from "../../src/grpc/generated/throttlekit_pb.js"

const root = path.resolve(import.meta.dirname, "../..")

const typeName = (field: DescField): string => {
  const t = field.proto.type
  if (t === FieldType.MESSAGE || t === FieldType.ENUM) return field.proto.typeName.replace(/^\.throttlekit\.v1\./, "")
  const names: Partial<Record<FieldType, string>> = {
    [FieldType.BOOL]: "bool",
    [FieldType.INT64]: "int64",
    [FieldType.STRING]: "string",
    [FieldType.DOUBLE]: "double"
  }
  return names[t] ?? `type#${t}`
}

const describeFields = (message: DescMessage): string =>
  message.fields
    .map((f) => `${f.number} ${f.fieldKind === "list" ? "repeated " : ""}${typeName(f)} ${f.proto.name}`)
    .join(" · ")

// CONTRACT.md §2, one line per message: "tag type field" in tag order.
const contract: Record<string, string> = {
  Decision: "1 bool allowed · 2 int64 limit · 3 int64 remaining · 4 int64 reset_at · 5 int64 retry_after_ms",
  CheckRequest: "1 string policy · 2 string key · 3 int64 cost",
  CheckResponse: "1 Decision decision",
  CheckManyRequest: "1 string policy · 2 repeated string keys · 3 int64 cost",
  CheckManyResponse: "1 repeated Decision decisions",
  PeekRequest: "1 string policy · 2 string key",
  PeekResponse: "1 Decision decision",
  ForecastRequest: "1 string policy · 2 string key · 3 int64 cost",
  ForecastResponse: "1 Forecast forecast",
  Forecast: "1 int64 spendable_now · 2 int64 next_replenish_at · 3 int64 full_at",
  DebitRequest: "1 string policy · 2 string key · 3 int64 tokens",
  DebitResponse: "1 Decision decision",
  AdmitRequest: "1 string policy · 2 string key · 3 int64 cost · 4 int64 hold · 5 int64 value",
  AdmitResponse:
    "1 Decision decision · 2 string lease_id · 3 int64 lease_expires_at · 4 string binding_axis · 5 bool policy_denied",
  ReleaseRequest: "1 string lease_id · 2 bool dropped",
  ReleaseResponse: "",
  HeartbeatRequest: "1 repeated string lease_ids",
  HeartbeatResponse: "1 repeated string live_ids · 2 repeated string reclaimed_ids · 3 int64 next_deadline",
  GetSnapshotRequest: "",
  GetSnapshotResponse: "1 Snapshot snapshot",
  Snapshot:
    "1 MonitorMeta meta · 2 repeated PolicySummary policies · 3 repeated GuardSummary guards · 4 repeated DenialEvent recent_denials · 5 string raw_json",
  MonitorMeta: "1 int64 generated_at · 2 int64 window_ms · 3 string mode · 4 string lens_version · 5 string node_id",
  KeyCount: "1 string key · 2 int64 count",
  LatencySummary: "1 double avg_ms · 2 double p50_ms · 3 double p99_ms · 4 double max_ms · 5 int64 n",
  PolicySummary:
    "1 string name · 2 string kind · 3 string strategy · 4 int64 allowed · 5 int64 denied · 6 int64 limit · 7 LatencySummary latency · 8 repeated KeyCount top_denied · 9 repeated KeyCount top_requested",
  GuardSummary:
    "1 string name · 2 int64 limit · 3 int64 inflight · 4 double share · 5 int64 l_global · 6 int64 nodes · 7 bool fenced",
  DenialEvent:
    "1 int64 at · 2 string policy · 3 string key · 4 string axis · 5 int64 limit · 6 int64 remaining · 7 int64 retry_after_ms",
  WatchRequest: "1 string policy",
  WatchResponse: "1 DenialEvent denial",
  Caller: "1 string domain · 2 string client_id · 3 string region · 4 int64 priority",
  ReserveRequest: "1 string policy · 2 Caller caller · 3 int64 wants · 4 int64 has · 5 int64 used · 6 Axis axis",
  Lease:
    "1 int64 capacity · 2 int64 expiry_ms · 3 int64 refresh_interval_ms · 4 int64 safe_capacity · 5 int64 retry_after_ms · 6 int64 limit",
  ReserveResponse: "1 Lease lease"
}

describe("proto/throttlekit.proto", () => {
  it("is package throttlekit.v1 with exactly the contract's messages and fields", () => {
    expect(file_throttlekit.proto.package).toBe("throttlekit.v1")
    const actual = Object.fromEntries(file_throttlekit.messages.map((m) => [m.name, describeFields(m)]))
    expect(actual).toEqual(contract)
  })

  it("reserves Decision 6-15 and ReserveResponse 2-15 plus \"owner_redirect\"", () => {
    const byName = new Map(file_throttlekit.messages.map((m) => [m.name, m]))
    const ranges = (name: string) => byName.get(name)!.proto.reservedRange.map((r) => [r.start, r.end - 1])
    expect(ranges("Decision")).toEqual([[6, 15]])
    expect(ranges("ReserveResponse")).toEqual([[2, 15]])
    expect(byName.get("ReserveResponse")!.proto.reservedName).toEqual(["owner_redirect"])
  })

  it("declares the Axis enum", () => {
    const axis = file_throttlekit.enums.find((e) => e.name === "Axis")!
    expect(axis.values.map((v) => [v.name, v.number])).toEqual([
      ["AXIS_UNSPECIFIED", 0],
      ["AXIS_RATE", 1],
      ["AXIS_CONCURRENCY", 2],
      ["AXIS_TOKEN_BUDGET", 3]
    ])
  })

  it("declares the three services with their methods and streaming kinds", () => {
    const services = Object.fromEntries(
      file_throttlekit.services.map((s) => [
        s.name,
        s.methods.map((m) => `${m.name}(${m.input.name}) ${m.methodKind} ${m.output.name}`)
      ])
    )
    expect(services).toEqual({
      RateLimiter: [
        "Check(CheckRequest) unary CheckResponse",
        "CheckMany(CheckManyRequest) unary CheckManyResponse",
        "Peek(PeekRequest) unary PeekResponse",
        "Forecast(ForecastRequest) unary ForecastResponse",
        "Debit(DebitRequest) unary DebitResponse",
        "Admit(AdmitRequest) unary AdmitResponse",
        "Release(ReleaseRequest) unary ReleaseResponse",
        "Heartbeat(HeartbeatRequest) unary HeartbeatResponse"
      ],
      Monitor: [
        "GetSnapshot(GetSnapshotRequest) unary GetSnapshotResponse",
        "Watch(WatchRequest) server_streaming WatchResponse"
      ],
      Fleet: ["Reserve(ReserveRequest) unary ReserveResponse"]
    })
  })
})

describe("proto/health.proto", () => {
  it("is the standard grpc.health.v1 Health service", () => {
    expect(file_health.proto.package).toBe("grpc.health.v1")
    const response = file_health.messages.find((m) => m.name === "HealthCheckResponse")!
    const status = response.nestedEnums.find((e) => e.name === "ServingStatus")!
    expect(status.values.map((v) => [v.name, v.number])).toEqual([
      ["UNKNOWN", 0],
      ["SERVING", 1],
      ["NOT_SERVING", 2],
      ["SERVICE_UNKNOWN", 3]
    ])
    const request = file_health.messages.find((m) => m.name === "HealthCheckRequest")!
    expect(request.fields.map((f) => [f.number, f.proto.name])).toEqual([[1, "service"]])
    const health = file_health.services[0]!
    expect(health.typeName).toBe("grpc.health.v1.Health")
    expect(health.methods.map((m) => [m.name, m.methodKind])).toEqual([["Check", "unary"], [
      "Watch",
      "server_streaming"
    ]])
  })
})

describe("src/grpc/generated", () => {
  it("is exactly what `npm run proto:gen` generates from proto/ (regenerate after editing a .proto)", () => {
    const out = mkdtempSync(path.join(tmpdir(), "tk-proto-"))
    const bin = path.join(root, "node_modules/.bin")
    execFileSync(path.join(bin, "buf"), ["generate", "proto", "--template", "proto/buf.gen.yaml", "-o", out], {
      cwd: root,
      env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}` },
      stdio: "pipe"
    })
    const committedDir = path.join(root, "src/grpc/generated")
    const freshDir = path.join(out, "src/grpc/generated")
    const committed = readdirSync(committedDir).sort()
    expect(readdirSync(freshDir).sort()).toEqual(committed)
    for (const file of committed) {
      const same = readFileSync(path.join(freshDir, file)).equals(readFileSync(path.join(committedDir, file)))
      expect([file, same]).toEqual([file, true])
    }
  }, 60_000)
})
