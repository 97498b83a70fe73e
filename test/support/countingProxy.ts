/**
 * A TCP proxy on loopback that counts round trips: it forwards bytes both ways unchanged and counts each
 * time the client starts sending after the server last spoke (or for the first time). A pipeline written
 * at once and answered at once is one round trip; the same commands sent one by one, each waiting for its
 * answer, are one each. Used where a test must show how many round trips a call made to one node (an
 * ioredis cluster client reaches each node through its proxy by `natMap`).
 */
import { createServer, type Server, Socket } from "node:net"

/** A running proxy to one target port. */
export interface CountingProxy {
  /** The loopback port clients connect to. */
  readonly port: number
  /** Round trips since the last `reset` (over every connection through this proxy). */
  readonly roundTrips: () => number
  /** The commands that opened each round trip since the last `reset` (the start of each, for a failure's message). */
  readonly openers: () => ReadonlyArray<string>
  /** Starts counting from zero. */
  readonly reset: () => void
  /** Closes the listener and every connection. */
  readonly close: () => Promise<void>
}

/** Starts a proxy on a free loopback port in front of `127.0.0.1:targetPort`. */
export const startCountingProxy = (targetPort: number): Promise<CountingProxy> =>
  new Promise((resolve, reject) => {
    let roundTrips = 0
    let openers: Array<string> = []
    const sockets = new Set<Socket>()
    const server: Server = createServer((client) => {
      const upstream = new Socket()
      sockets.add(client)
      sockets.add(upstream)
      // Who spoke last on this connection: a client write after the server's answer starts a round trip.
      let clientTurn = false
      client.on("data", (chunk) => {
        if (!clientTurn) {
          clientTurn = true
          roundTrips++
          openers.push(chunk.subarray(0, 60).toString("latin1").replace(/\r\n/g, " "))
        }
        upstream.write(chunk)
      })
      upstream.on("data", (chunk) => {
        clientTurn = false
        client.write(chunk)
      })
      const end = () => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
      }
      client.on("close", end)
      upstream.on("close", end)
      client.on("error", end)
      upstream.on("error", end)
      client.setNoDelay(true)
      upstream.setNoDelay(true)
      upstream.connect(targetPort, "127.0.0.1")
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        port,
        roundTrips: () => roundTrips,
        openers: () => openers,
        reset: () => {
          roundTrips = 0
          openers = []
        },
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
