/**
 * The policies the Lens tests serve: `login` denies the 4th check of a key in a minute, `export` the 2nd,
 * `search` is a busier one, and `pool` a guard of 4 slots.
 */
export const lensConfig = `
limiters:
  login:
    strategy: fixedWindow
    limit: 3
    windowMs: 1m
  export:
    strategy: fixedWindow
    limit: 1
    windowMs: 1m
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
