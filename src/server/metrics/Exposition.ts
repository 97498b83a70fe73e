/**
 * The Prometheus text exposition format (0.0.4), written: one family at a time, its `# HELP` and
 * `# TYPE` lines, then its samples. Label values are escaped (backslash, double quote, newline), help
 * text too (backslash, newline); sample values are written as Prometheus reads them (`+Inf`, `-Inf`,
 * `NaN`). Only what the server's `/metrics` needs: counters and gauges, no timestamps.
 *
 * @since 0.3.0
 */

/**
 * The media type of the text format.
 *
 * @since 0.3.0
 * @category constants
 */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/**
 * A metric family's type.
 *
 * @since 0.3.0
 * @category models
 */
export type FamilyType = "counter" | "gauge"

/**
 * Label names to values, in the order they are written.
 *
 * @since 0.3.0
 * @category models
 */
export type Labels = Readonly<Record<string, string>>

const escapeLabel = (value: string): string => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const formatValue = (value: number): string =>
  Number.isNaN(value) ? "NaN" : value === Infinity ? "+Inf" : value === -Infinity ? "-Inf" : String(value)

const formatLabels = (labels: Labels): string => {
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabel(value)}"`)
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`
}

/**
 * Builds an exposition: families in the order they are declared, each with its samples. A family with
 * no samples is still declared (its HELP and TYPE lines), so a scraper sees every name the server has.
 *
 * @since 0.3.0
 * @category models
 */
export class Exposition {
  private readonly lines: Array<string> = []

  /** Declares a family; the samples that follow belong to it. */
  family(name: string, type: FamilyType, help: string): this {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`)
    return this
  }

  /** One sample of the family declared last. */
  sample(name: string, labels: Labels, value: number): this {
    this.lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`)
    return this
  }

  /** The text: every line ended by a newline. */
  text(): string {
    return this.lines.length === 0 ? "" : `${this.lines.join("\n")}\n`
  }
}
