// Golden graphs: each spec under graphs/ draws byte-for-byte to graphs/<name>.dot and .mmd (from
// an empty state: every address and VNI allocated, nothing asked of a host), Graphviz itself
// renders the DOT (`dot -Tsvg`) and Mermaid's own parser accepts the Mermaid: the independent
// checks a self-written snapshot cannot give. As for the domain XML, only `npm run golden:update`
// writes the expected files; review their diff.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { execa } from 'execa';
import { parseSpecText } from '../../lib/engine/index.js';
import { buildGraph } from '../../lib/graph/build.js';
import { desiredWorld } from '../../lib/graph/world.js';
import { renderGraph } from '../../lib/graph/index.js';

const dir = new URL('./graphs/', import.meta.url);
const cases = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => f.replace(/\.yaml$/, ''));

const expected = (name: string, ext: string) => {
  const url = new URL(`${name}.${ext}`, dir);
  if (!existsSync(url))
    throw new Error(`golden file graphs/${name}.${ext} is missing: run npm run golden:update and review it`);
  return readFileSync(url, 'utf8');
};

const specOf = (name: string) => parseSpecText(readFileSync(new URL(`${name}.yaml`, dir), 'utf8'), `${name}.yaml`);
const draw = (name: string) => buildGraph(desiredWorld(specOf(name), []));

const svgOf = (dot: string) => execa('dot', ['-Tsvg'], { input: dot, reject: false });
const MERMAID = new URL('../helpers/mermaid-parse.mjs', import.meta.url).pathname;
const mermaidParse = (text: string) => execa('node', [MERMAID], { input: text, reject: false });

describe('golden network graphs', () => {
  test('there are golden graphs', () => expect(cases.length).toBeGreaterThanOrEqual(1));

  test.each(cases)('%s draws byte-for-byte as DOT and Mermaid, and Graphviz renders the DOT', async (name) => {
    const g = draw(name);
    expect(renderGraph(g, 'dot')).toBe(expected(name, 'dot'));
    expect(renderGraph(g, 'mermaid')).toBe(expected(name, 'mmd'));
    const svg = await svgOf(expected(name, 'dot'));
    expect(svg.stderr).toBe('');
    expect(svg.exitCode).toBe(0);
    expect(svg.stdout).toMatch(/<svg [\s\S]*<\/svg>/);
    // every VM of the spec reaches the picture
    for (const vm of specOf(name).vms) expect(svg.stdout).toContain(`<title>vm:${vm.name}</title>`);
    const mermaid = await mermaidParse(expected(name, 'mmd'));
    expect([mermaid.exitCode, mermaid.stdout, mermaid.stderr]).toEqual([0, 'flowchart-v2', '']);
  });

  test('neither check is a rubber stamp: each rejects a broken document', async () => {
    const g = draw(cases[0]!);
    const dot = renderGraph(g, 'dot');
    expect((await svgOf(dot.replace(/\}\n$/, '\n'))).exitCode).not.toBe(0);
    // a node whose label is not closed
    const mermaid = renderGraph(g, 'mermaid');
    const broken = await mermaidParse(mermaid.replace(/"\)\n/, '"\n'));
    expect(broken.exitCode).toBe(1);
    expect(broken.stderr).toMatch(/Parse error/);
  });
});
