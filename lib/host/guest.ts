// Readiness of a guest as its host sees it: through the host's runner (this machine or SSH), so a
// guest on a remote host is asked from there, where its tenant network is.
import type { CommandRunner } from './command-runner.js';

/**
 * The SSH server's identification when the guest's port 22 answers a key exchange (ssh-keyscan,
 * from openssh-client), else undefined.
 */
export async function sshAnswer(runner: CommandRunner, ip: string): Promise<string | undefined> {
  const r = await runner.run(['ssh-keyscan', '-T', '3', '-p', '22', ip], { allowFailure: true, step: `ssh: ${ip}` });
  if (!/ (ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+) /.test(r.stdout)) return undefined;
  return /SSH-2\.0-\S+/.exec(r.stderr)?.[0] ?? 'SSH-2.0';
}

/** cloud-init's last line on the console once its final stage is done. */
export const CLOUD_INIT_DONE = /Cloud-init v\. \S+ finished at .*Up ([\d.]+) seconds/;
