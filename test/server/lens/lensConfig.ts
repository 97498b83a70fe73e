/**
 * The policies the Lens tests serve: `login` denies the 4th check of a key in its window, `export` the
 * 2nd, `search` is a busier one, and `pool` a guard of 4 slots. The fixed windows last 30 days: the tests
 * count checks on the real clock, and a minute's window rolls over at every minute's start.
 */
export const lensConfig = `
limiters:
  login:
    strategy: fixedWindow
    limit: 3
    windowMs: 30d
  export:
    strategy: fixedWindow
    limit: 1
    windowMs: 30d
  search:
    strategy: gcra
    limit: 40
    period: 1s
  pool:
    concurrency:
      initialLimit: 4
      minLimit: 1
      maxLimit: 8
`
