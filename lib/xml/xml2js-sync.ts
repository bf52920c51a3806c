import xml2js from 'xml2js';
import { VirtwireError } from '../errors/virtwire-error.js';

// xml2js's parser calls back synchronously when `async` is off; this makes that explicit.
export function parseXmlSync(xml: string): Record<string, unknown> {
  let result: Record<string, unknown> | undefined;
  let failure: unknown;
  const parser = new xml2js.Parser({
    explicitArray: true,
    explicitCharkey: true,
    charkey: '_',
    attrkey: '$',
    trim: true,
    async: false,
  });
  parser.parseString(xml, (err: unknown, value: Record<string, unknown>) => {
    failure = err;
    result = value;
  });
  if (failure) throw failure;
  if (!result) throw new VirtwireError('INTERNAL', 'the XML parser returned nothing');
  return result;
}

const builder = new xml2js.Builder({ headless: true, renderOpts: { pretty: true, indent: '  ', newline: '\n' } });

export function buildXml(root: Record<string, unknown>): string {
  return builder.buildObject(root) + '\n';
}
