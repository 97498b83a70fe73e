/**
 * `npm run example -- <name> [flags]`: runs one example (rate, llm-budget, concurrency, waiting, fleet, monitor,
 * http-server).
 * Each also runs on its own: `npx tsx examples/<name>.ts [flags]`.
 */
const examples = ["rate", "llm-budget", "concurrency", "waiting", "fleet", "monitor", "http-server"] as const

const [name, ...rest] = process.argv.slice(2)
if (name === undefined || !(examples as ReadonlyArray<string>).includes(name)) {
  console.error(`usage: npm run example -- <${examples.join("|")}> [--redis URL | --service host:port]`)
  process.exitCode = 2
} else {
  const example: { readonly run: (argv: ReadonlyArray<string>) => void } = await import(`./${name}.ts`)
  example.run(rest)
}
