/**
 * Configuration for the `layerConfig` tests: a layer built with Effect's configuration served from a
 * map of the given entries only (a key not among them is missing: a `PolicyError`).
 */
import { ConfigProvider, Layer } from "effect"

/** `layer`, reading its `Config` from `entries` only. */
export const withConfig = <A, E, R>(
  layer: Layer.Layer<A, E, R>,
  entries: ReadonlyArray<readonly [string, string]>
): Layer.Layer<A, E, R> => Layer.provide(layer, Layer.setConfigProvider(ConfigProvider.fromMap(new Map(entries))))
