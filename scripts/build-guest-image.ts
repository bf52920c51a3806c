// `node dist/scripts/build-guest-image.js`: builds (or finds cached) the test guest and the
// Debian cloud image and prints where they are. Idempotent; used by the demo, the tests and CI
// through scripts/prepare.sh.
import { buildTestGuest } from '../lib/testing/guest-image.js';
import { buildCloudImage } from '../lib/testing/cloud-image.js';

const image = await buildTestGuest({ log: (l) => console.log(`build-guest-image: ${l}`) });
console.log(
  `build-guest-image: kernel ${image.kernel}\nbuild-guest-image: initrd ${image.initrd} (${image.kernelPackage})`,
);
const t0 = performance.now();
const cloud = await buildCloudImage({ log: (l) => console.log(`build-guest-image: ${l}`) });
const seconds = ((performance.now() - t0) / 1000).toFixed(0);
console.log(
  `build-guest-image: cloud image ${cloud.image} (${(cloud.bytes / 1048576).toFixed(0)} MiB, ${cloud.sizeGiB} GiB disk; ${seconds} s)`,
);
