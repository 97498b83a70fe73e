/** Fenced code blocks of a Markdown text, for the tests that check the README's examples. */

/** One fenced block: the line its opening fence is on (1-based) and its text. */
export interface FencedBlock {
  readonly line: number
  readonly code: string
}

/** The blocks fenced as one of `languages` (e.g. `["ts", "typescript"]`), in order. */
export const fencedBlocks = (markdown: string, languages: ReadonlyArray<string>): Array<FencedBlock> => {
  const opening = new RegExp(`^\`\`\`(${languages.join("|")})\\s*$`)
  const found: Array<FencedBlock> = []
  let open: { line: number; body: Array<string> } | undefined
  markdown.split("\n").forEach((line, index) => {
    if (open === undefined) {
      if (opening.test(line)) open = { line: index + 1, body: [] }
    } else if (/^```\s*$/.test(line)) {
      found.push({ line: open.line, code: open.body.join("\n") + "\n" })
      open = undefined
    } else {
      open.body.push(line)
    }
  })
  return found
}
