// `npm run golden:update`: renders every test/golden/specs/<name>.json and writes
// test/golden/expected/<name>.xml, every test/golden/firewall/<name>.json as <name>.nft and
// <name>.iptables, and draws every test/golden/graphs/<name>.yaml as .dot and
// .mmd beside it. The only writer of golden files (the tests never write them);
// review `git diff test/golden/expected` before committing.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graph, parseSpecText, renderDomainXml, renderGraph } from '../lib/index.js';
import { BACKENDS, caseState, firewallBatches } from './golden/firewall-batches.js';

const root = new URL('../../test/golden/', import.meta.url);
for (const f of readdirSync(new URL('specs/', root)).filter((x) => x.endsWith('.json'))) {
  const name = f.replace(/\.json$/, '');
  const { spec, options } = JSON.parse(readFileSync(new URL(`specs/${f}`, root), 'utf8')) as {
    spec: unknown;
    options?: object;
  };
  writeFileSync(new URL(`expected/${name}.xml`, root), renderDomainXml(spec, options));
  console.log(`golden:update: wrote test/golden/expected/${name}.xml`);
}

// firewall: each test/golden/firewall/<name>.json as both backends' batches to an empty host
const firewall = new URL('firewall/', root);
for (const f of readdirSync(firewall).filter((x) => x.endsWith('.json'))) {
  const name = f.replace(/\.json$/, '');
  const text = readFileSync(new URL(f, firewall), 'utf8');
  const state = caseState(text);
  for (const kind of BACKENDS) {
    const ext = kind === 'nftables' ? 'nft' : 'iptables';
    writeFileSync(new URL(`${name}.${ext}`, firewall), await firewallBatches(state, kind));
    console.log(`golden:update: wrote test/golden/firewall/${name}.${ext}`);
  }
}

// graphs: each test/golden/graphs/<name>.yaml drawn against an empty state, as DOT and Mermaid
const empty = mkdtempSync(join(tmpdir(), 'vw-golden-'));
try {
  const graphs = new URL('graphs/', root);
  for (const f of readdirSync(graphs).filter((x) => x.endsWith('.yaml'))) {
    const name = f.replace(/\.yaml$/, '');
    const spec = parseSpecText(readFileSync(new URL(f, graphs), 'utf8'), f);
    const g = await graph({ spec, stateDir: empty });
    for (const [ext, format] of [
      ['dot', 'dot'],
      ['mmd', 'mermaid'],
    ] as const) {
      writeFileSync(new URL(`${name}.${ext}`, graphs), renderGraph(g, format));
      console.log(`golden:update: wrote test/golden/graphs/${name}.${ext}`);
    }
  }
} finally {
  rmSync(empty, { recursive: true, force: true });
}
