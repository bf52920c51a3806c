export type * from './spec.js';
export type * from './resolved.js';
export type * from './domain-xml.js';
export type * from './host.js';
export type * from './vm.js';
export type * from './graph.js';
