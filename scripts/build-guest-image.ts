// `node dist/scripts/build-guest-image.js`: builds (or finds cached) the test guest and prints
// where it is. Idempotent; used by the demo, the tests and CI through scripts/setup-host.sh.
import { buildTestGuest } from '../lib/testing/guest-image.js';

const image = await buildTestGuest({ log: (l) => console.log(`build-guest-image: ${l}`) });
console.log(
  `build-guest-image: kernel ${image.kernel}\nbuild-guest-image: initrd ${image.initrd} (${image.kernelPackage})`,
);
