// `npm run golden:update`: renders every test/golden/specs/<name>.json and writes
// test/golden/expected/<name>.xml. The only writer of golden files (the tests never write them);
// review `git diff test/golden/expected` before committing.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { renderDomainXml } from '../lib/index.js';

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
