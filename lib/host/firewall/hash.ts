// A short content hash: names a rendered table (nft's `applied` comment, iptables' VW?-<hash>
// chains), so a changed ruleset is seen by comparing names, not rules.
import { createHash } from 'node:crypto';

export const hashOf = (body: string) => createHash('sha256').update(body).digest('hex').slice(0, 16);
