export { renderResolvedDomainXml, parseDomainXml, domainToXml, VIRTWIRE_XMLNS } from './domain-xml.js';
export { effectiveAccel, type DomainRenderOptions, type DomainFiles } from './domain-model.js';
export { buildXml } from './xml2js-sync.js';
