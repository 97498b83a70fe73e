/** The shared `RateLimiter` conformance suite on the Memory door. */
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import { conformancePolicies, runConformance } from "../support/conformance.js"

runConformance("memory", MemoryBackend.layer({ policies: conformancePolicies }))
