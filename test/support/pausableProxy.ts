/**
 * A TCP proxy on loopback that can be cut: while paused it reads nothing from either side (bytes wait in
 * the kernel, so calls through it hang, as across a network partition), and `resume` lets them flow again.
 * Used to cut one process off from Redis without touching the Redis server the others share.
 */
import { createServer, type Server, Socket } from "node:net"

/** A running proxy to one target port. */
export interface PausableProxy {
  /** The loopback port clients connect to. */
  readonly port: number
  /** Stops forwarding in both directions, on every connection (and on new ones until `resume`). */
  readonly pause: () => void
  /** Forwards again. */
  readonly resume: () => void
  /** Closes the listener and every connection. */
  readonly close: () => Promise<void>
}

/** Starts a proxy on a free loopback port in front of `127.0.0.1:targetPort`. */
export const startPausableProxy = (targetPort: number): Promise<PausableProxy> =>
  new Promise((resolve, reject) => {
    let paused = false
    const sockets = new Set<Socket>()
    const server: Server = createServer((client) => {
      const upstream = new Socket()
      for (const socket of [client, upstream]) {
        sockets.add(socket)
        if (paused) socket.pause()
      }
      client.on("data", (chunk) => upstream.write(chunk))
      upstream.on("data", (chunk) => client.write(chunk))
      const end = () => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
      }
      for (const socket of [client, upstream]) {
        socket.on("close", end)
        socket.on("error", end)
        socket.setNoDelay(true)
      }
      upstream.connect(targetPort, "127.0.0.1")
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resolve({
        port: typeof address === "object" && address !== null ? address.port : 0,
        pause: () => {
          paused = true
          for (const socket of sockets) socket.pause()
        },
        resume: () => {
          paused = false
          for (const socket of sockets) socket.resume()
        },
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
