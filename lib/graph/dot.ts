// Graphviz DOT for a NetworkGraph. Every id and label is a quoted DOT string (backslash and quote
// escaped, line breaks as DOT's \n): names come from validated specs, but nothing is spliced raw.
import type { GraphEdge, GraphEdgeKind, GraphNode, GraphNodeKind, NetworkGraph } from '../../types/graph.js';
import { clusterTree, type ClusterTree } from './tree.js';

const NODE_STYLE: Record<GraphNodeKind, string> = {
  vm: 'shape=box, style="rounded,filled", fillcolor="#dbe8fb"',
  bridge: 'shape=box, style=filled, fillcolor="#fff1c9"',
  gateway: 'shape=house, style=filled, fillcolor="#e3f4e1"',
  uplink: 'shape=cds, style=filled, fillcolor="#f1e4f7"',
  outside: 'shape=ellipse, style=dashed',
  group: 'shape=note, style=filled, fillcolor="#fde2e2"',
  peer: 'shape=ellipse',
};

const EDGE_STYLE: Record<GraphEdgeKind, string> = {
  port: '',
  gateway: 'arrowhead=none',
  uplink: 'arrowhead=none',
  segment: 'dir=none, style=bold, color="#7b3f99"',
  nat: 'style=dashed',
  member: 'style=dotted, arrowhead=odot',
  rule: 'color="#b3261e", fontcolor="#b3261e"',
};

/** A DOT quoted string. */
const quote = (text: string): string =>
  `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\r?\n/g, '\\n')}"`;

export function renderDot(graph: NetworkGraph): string {
  const out = [
    'digraph virtwire {',
    `  graph [rankdir=LR, fontname="Helvetica", fontsize=11, label=${quote(`virtwire: ${graph.view}`)}, labelloc=t];`,
    '  node [fontname="Helvetica", fontsize=10];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  const tree = clusterTree(graph);
  for (const c of tree.clusters) cluster(out, c, '  ');
  for (const n of tree.nodes) out.push(`  ${node(n)}`);
  for (const e of graph.edges) out.push(`  ${edge(e)}`);
  out.push('}', '');
  return out.join('\n');
}

function cluster(out: string[], c: ClusterTree, indent: string): void {
  out.push(`${indent}subgraph ${quote(`cluster_${c.cluster.id}`)} {`);
  out.push(`${indent}  label=${quote(c.cluster.label)}; style=rounded; color="#888888";`);
  for (const child of c.children) cluster(out, child, `${indent}  `);
  for (const n of c.nodes) out.push(`${indent}  ${node(n)}`);
  out.push(`${indent}}`);
}

function node(n: GraphNode): string {
  const label = [...n.label, ...(n.drift ? [`drift: ${n.drift}`] : [])].join('\n');
  const drift = n.drift ? ', color="#d00000", penwidth=2' : '';
  return `${quote(n.id)} [label=${quote(label)}, ${NODE_STYLE[n.kind]}${drift}];`;
}

function edge(e: GraphEdge): string {
  const attrs = [...(e.label ? [`label=${quote(e.label)}`] : []), ...(EDGE_STYLE[e.kind] ? [EDGE_STYLE[e.kind]] : [])];
  return `${quote(e.from)} -> ${quote(e.to)}${attrs.length ? ` [${attrs.join(', ')}]` : ''};`;
}
