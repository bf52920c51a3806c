// virtwire/testing: for other projects' integration tests that boot real guests.
export { buildTestGuest, DEFAULT_GUEST_CACHE, GUEST_MODULES, type TestGuestImage } from './guest-image.js';
export { GuestLab, withGuests, testGuestSpec, type TestGuestBehaviour } from './guests.js';
export { waitForConsole, consoleText } from './console.js';
export { buildCloudImage, type CloudImage } from './cloud-image.js';
