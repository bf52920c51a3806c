// `node dist/scripts/build-guest-image.js [--cloud]`: builds (or finds cached) the test guest
// and prints where it is; with --cloud, the Debian cloud image too. Idempotent; the test guest is
// built for every command through scripts/prepare.sh. The cloud image (~4 minutes on a fresh host)
// is built where it is used, on first use: `demo --cloud`, the cloud tests, the cloud bench.
import { buildTestGuest } from '../lib/testing/guest-image.js';
import { buildCloudImage } from '../lib/testing/cloud-image.js';

const image = await buildTestGuest({ log: (l) => console.log(`build-guest-image: ${l}`) });
console.log(
  `build-guest-image: kernel ${image.kernel}\nbuild-guest-image: initrd ${image.initrd} (${image.kernelPackage})`,
);
if (process.argv.includes('--cloud')) {
  const t0 = performance.now();
  const cloud = await buildCloudImage({ log: (l) => console.log(`build-guest-image: ${l}`) });
  const seconds = ((performance.now() - t0) / 1000).toFixed(0);
  console.log(
    `build-guest-image: cloud image ${cloud.image} (${(cloud.bytes / 1048576).toFixed(0)} MiB, ${cloud.sizeGiB} GiB disk; ${seconds} s)`,
  );
}
