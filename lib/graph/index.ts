// `virtwire graph`: the network as a picture. One model (NetworkGraph), two text renderers (DOT
// and Mermaid); SVG is Graphviz's rendering of the DOT (svg.ts).
import type { GraphFormat, NetworkGraph } from '../../types/graph.js';
import { readState, type ScopeOptions, type SpecFile } from '../engine/index.js';
import { VirtwireError } from '../errors/index.js';
import { buildGraph } from './build.js';
import { renderDot } from './dot.js';
import { renderMermaid } from './mermaid.js';
import { desiredWorld, liveWorld } from './world.js';

export interface GraphOptions extends ScopeOptions {
  /** the spec file (loadSpecFile); required unless `live` */
  spec?: SpecFile;
  /** draw what the state records and the hosts hold now (asks every host), drift marked */
  live?: boolean;
}

/**
 * The network as a graph: the spec's desired world (the state's allocations kept, nothing asked
 * of a host), or with `live` what is there now.
 */
export async function graph(options: GraphOptions): Promise<NetworkGraph> {
  const { spec, live, ...scope } = options;
  if (live) return buildGraph(await liveWorld(scope, spec));
  if (!spec) throw new VirtwireError('SPEC_INVALID', 'a spec file is required to draw the desired network (or: live)');
  return buildGraph(desiredWorld(spec, await readState(scope)));
}

/** The graph as DOT (Graphviz) or Mermaid text; the same graph always gives the same text. */
export function renderGraph(g: NetworkGraph, format: GraphFormat = 'dot'): string {
  return format === 'mermaid' ? renderMermaid(g) : renderDot(g);
}

export { renderGraphSvg } from './svg.js';
