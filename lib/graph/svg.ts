// SVG is Graphviz's rendering of the DOT (`dot -Tsvg`, Debian's graphviz package; installed by
// scripts/setup-host.sh), run through a CommandRunner like every command virtwire runs.
import type { NetworkGraph } from '../../types/graph.js';
import { HostCommandError, HostUnsupportedError } from '../errors/index.js';
import { LocalRunner, type CommandRunner } from '../host/index.js';
import { renderDot } from './dot.js';

export async function renderGraphSvg(g: NetworkGraph, runner: CommandRunner = new LocalRunner()): Promise<string> {
  try {
    const r = await runner.run(['dot', '-Tsvg'], {
      input: renderDot(g),
      step: 'graph: render SVG',
      keepFinalNewline: true,
    });
    return r.stdout;
  } catch (e) {
    // a dot that could not run at all (not installed); one that failed keeps its own error
    if (e instanceof HostCommandError && e.exitCode === undefined)
      throw new HostUnsupportedError(
        'graphviz',
        "an SVG needs Graphviz's dot (Debian: apt-get install graphviz); DOT and Mermaid text need nothing",
      );
    throw e;
  }
}
