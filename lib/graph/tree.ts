// The clusters of a graph as a tree, each with its own nodes: what both renderers walk.
import type { GraphCluster, GraphNode, NetworkGraph } from '../../types/graph.js';

export interface ClusterTree {
  cluster: GraphCluster;
  nodes: GraphNode[];
  children: ClusterTree[];
}

/** The top-level nodes and clusters, in the graph's own (deterministic) order. */
export function clusterTree(graph: NetworkGraph): { nodes: GraphNode[]; clusters: ClusterTree[] } {
  const of = (id: string | undefined): ClusterTree[] =>
    graph.clusters
      .filter((c) => c.parent === id)
      .map((cluster) => ({
        cluster,
        nodes: graph.nodes.filter((n) => n.cluster === cluster.id),
        children: of(cluster.id),
      }));
  return { nodes: graph.nodes.filter((n) => n.cluster === undefined), clusters: of(undefined) };
}
