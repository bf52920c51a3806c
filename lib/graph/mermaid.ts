// Mermaid flowchart text for a NetworkGraph (renders in GitHub and GitLab Markdown). Mermaid ids
// are letters, digits and underscores: each other character of a graph id becomes _<hex>_, so
// distinct ids stay distinct and the same graph gives the same ids. Labels are quoted with
// Mermaid's entity codes for quotes and angle brackets; line breaks become <br/>.
import type { GraphEdge, GraphEdgeKind, GraphNode, GraphNodeKind, NetworkGraph } from '../../types/graph.js';
import { clusterTree, type ClusterTree } from './tree.js';

const SHAPE: Record<GraphNodeKind, [string, string]> = {
  vm: ['(', ')'],
  bridge: ['[', ']'],
  gateway: ['[/', '\\]'],
  uplink: ['>', ']'],
  outside: ['((', '))'],
  group: ['[[', ']]'],
  peer: ['([', '])'],
};

const ARROW: Record<GraphEdgeKind, string> = {
  port: '-->',
  gateway: '---',
  uplink: '---',
  segment: '===',
  nat: '-.->',
  member: '-.-',
  rule: '==>',
};

const id = (text: string) => text.replace(/[^A-Za-z0-9]/g, (c) => `_${c.charCodeAt(0).toString(16)}_`);

const text = (s: string) =>
  `"${s.replace(/"/g, '#quot;').replace(/</g, '#lt;').replace(/>/g, '#gt;').replace(/\r?\n/g, '<br/>')}"`;

export function renderMermaid(graph: NetworkGraph): string {
  const out = ['flowchart LR', `  %% virtwire: ${graph.view}`];
  const tree = clusterTree(graph);
  for (const c of tree.clusters) cluster(out, c, '  ');
  for (const n of tree.nodes) out.push(`  ${node(n)}`);
  for (const e of graph.edges) out.push(`  ${edge(e)}`);
  const drifted = graph.nodes.filter((n) => n.drift);
  if (drifted.length) {
    out.push('  classDef drift stroke:#d00000,stroke-width:3px');
    out.push(`  class ${drifted.map((n) => id(n.id)).join(',')} drift`);
  }
  out.push('');
  return out.join('\n');
}

function cluster(out: string[], c: ClusterTree, indent: string): void {
  out.push(`${indent}subgraph ${id(`cluster:${c.cluster.id}`)}[${text(c.cluster.label)}]`);
  for (const child of c.children) cluster(out, child, `${indent}  `);
  for (const n of c.nodes) out.push(`${indent}  ${node(n)}`);
  out.push(`${indent}end`);
}

function node(n: GraphNode): string {
  const [open, close] = SHAPE[n.kind];
  return `${id(n.id)}${open}${text([...n.label, ...(n.drift ? [`drift: ${n.drift}`] : [])].join('\n'))}${close}`;
}

function edge(e: GraphEdge): string {
  const label = e.label ? `|${text(e.label)}|` : '';
  return `${id(e.from)} ${ARROW[e.kind]}${label} ${id(e.to)}`;
}
