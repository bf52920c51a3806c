// virtwire's public API. Everything exported here is supported; anything else is internal.
export type * from '../types/index.js';
export * from './errors/index.js';
export { validateVm, validateNetwork } from './spec/index.js';
export { renderDomainXml, parseDomainXml, domainToXml, type DomainRenderOptions } from './xml/index.js';
export {
  Libvirt,
  Domain,
  Network,
  type DomainState,
  type DomainSummary,
  type NetworkSummary,
  type UndefineOptions,
  type XmlOptions,
  type Subscription,
  type DomainEvent,
  type DomainEventType,
} from './libvirt/index.js';
export {
  HostPlane,
  probeHost,
  renderDnsmasqConfig,
  type HostPlaneOptions,
  type ApplyReport,
  type CommandRunner,
  type RunOptions,
  type RunResult,
  type Lease,
} from './host/index.js';
export { createVm, destroyVm } from './engine/index.js';
