export { renderDomainXml, renderResolvedDomainXml, parseDomainXml, domainToXml, VIRTWIRE_XMLNS } from './domain-xml.js';
export { domainModel, effectiveAccel, vmPaths, DEFAULT_STATE_DIR, DEFAULT_EMULATOR, type DomainRenderOptions } from './domain-model.js';
export { buildXml } from './xml2js-sync.js';
