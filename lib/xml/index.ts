export {
  renderResolvedDomainXml,
  parseDomainXml,
  domainToXml,
  interfaceToXml,
  snapshotToXml,
  unmodelledDevices,
  VIRTWIRE_XMLNS,
} from './domain-xml.js';
export {
  effectiveAccel,
  diskTargets,
  nicInterface,
  type DomainRenderOptions,
  type DomainFiles,
} from './domain-model.js';
export { buildXml, parseXmlSync } from './xml2js-sync.js';
