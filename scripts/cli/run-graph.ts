// `virtwire graph`: the network as a picture. DOT and Mermaid are virtwire's own text; SVG is
// Graphviz's rendering of the DOT (`dot -Tsvg`, from Debian's graphviz package). The desired
// graph reads the spec and the state's records only; --live asks the hosts, under a reader's lock.
import { writeFileSync } from 'node:fs';
import {
  graph,
  loadSpecFile,
  renderGraph,
  renderGraphSvg,
  withCommandLock,
  VirtwireError,
  type GraphOptions,
} from '../../lib/index.js';
import { adoptSpecState, type Ctx } from './program.js';

type GraphOutput = 'dot' | 'svg' | 'mermaid';

export interface GraphFlags {
  file?: string;
  format?: GraphOutput;
  live?: boolean;
  out?: string;
}

export async function graphCommand(ctx: Ctx, flags: GraphFlags): Promise<number> {
  if (!flags.file && !flags.live)
    throw new VirtwireError(
      'SPEC_INVALID',
      'a spec file is required: -f spec.yaml (or --live: what the hosts hold now)',
    );
  const spec = flags.file ? loadSpecFile(flags.file) : undefined;
  adoptSpecState(ctx, spec);
  const options: GraphOptions = {
    ...ctx.where,
    uri: ctx.uri,
    ...(spec ? { spec } : {}),
    ...(spec?.hosts ? { hosts: spec.hosts } : {}),
    ...(flags.live ? { live: true } : {}),
  };
  // live: a reader's lock, as plan takes, so no apply changes the records while the hosts are read
  const g = flags.live
    ? await withCommandLock(ctx.where, ctx.line, () => graph(options), ctx.lock(true))
    : await graph(options);
  const format = flags.format ?? 'dot';
  const output = format === 'svg' ? await renderGraphSvg(g) : renderGraph(g, format);
  if (!flags.out) {
    process.stdout.write(output);
    return 0;
  }
  writeFileSync(flags.out, output);
  ctx.ui.say(`Wrote the ${g.view} network (${format}) to ${flags.out}.`);
  return 0;
}
