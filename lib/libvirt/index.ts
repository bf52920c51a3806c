export {
  Libvirt,
  Domain,
  Network,
  type Hypervisor,
  type DomainHandle,
  type AffectOptions,
  type SnapshotInfo,
  type DomainState,
  type DomainSummary,
  type NetworkSummary,
  type UndefineOptions,
  type XmlOptions,
  type Subscription,
} from './connection.js';
export { type DomainEvent, type DomainEventType } from './event-loop.js';
