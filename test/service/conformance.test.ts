import { conformancePolicies, runConformance } from "../support/conformance.js"
import { serviceOverMemory } from "./support.js"

runConformance("ServiceBackend → our server (memory store)", serviceOverMemory(conformancePolicies))
