// Mermaid's own parser over the text on stdin, in a process of its own (Mermaid needs a DOM:
// jsdom gives it one): exit 0 when Mermaid accepts the diagram, 1 with its parse error when not.
// Run by test/golden/graph.test.ts, as virt-xml-validate is for domain XML.
import { JSDOM } from 'jsdom';
import { readFileSync } from 'node:fs';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });
try {
  const { diagramType } = await mermaid.parse(readFileSync(0, 'utf8'));
  console.log(diagramType);
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exitCode = 1;
}
