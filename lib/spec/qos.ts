// The per-port packet-rate cap (QosSpec.packetsPerSecond): its default and bounds, shared by the
// spec's validation and the firewall policy that enforces it.

/** Every port's cap on what its guest sends, unless its QoS says otherwise (packets/s). */
export const PACKET_RATE = { default: 100_000, min: 100, max: 1_000_000 } as const;

/** A port's cap: its QoS's, else the default. */
export const packetRateOf = (qos: { packetsPerSecond?: number } | undefined): number =>
  qos?.packetsPerSecond ?? PACKET_RATE.default;
