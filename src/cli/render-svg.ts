/**
 * DOT to SVG with `@viz-js/viz`, Graphviz compiled to WebAssembly: it works offline, needs no
 * Graphviz on the investigator's machine and runs no external program on evidence text.
 *
 * The module (about 1.2 MB of JavaScript with the WebAssembly inlined) is imported lazily, on
 * the first picture, so `stopctl`'s other commands do not pay for loading it.
 */
import type { Viz } from '@viz-js/viz';

let vizPromise: Promise<Viz> | undefined;

/** The Graphviz instance, made once per process. A failed load is not cached, so a retry may succeed. */
function loadViz(): Promise<Viz> {
  vizPromise ??= import('@viz-js/viz').then(
    (module) => module.instance(),
    (error: unknown) => {
      vizPromise = undefined;
      throw error;
    },
  );
  return vizPromise;
}

/**
 * Renders DOT text as an SVG document (UTF-8 text starting with an XML declaration) with the
 * `dot` layout engine. Rejects with an Error naming Graphviz's complaint when the DOT text is
 * not valid (the DOT of `format-dot.ts` always is).
 */
export async function renderSvg(dot: string): Promise<string> {
  const viz = await loadViz();
  const result = viz.render(dot, { format: 'svg', engine: 'dot' });
  if (result.status !== 'success') {
    const messages = result.errors.map((error) => `${error.level ?? 'error'}: ${error.message.trim()}`).join('; ');
    throw new Error(`Cannot render picture: Graphviz failed (${messages || 'no message'})`);
  }
  return result.output;
}
