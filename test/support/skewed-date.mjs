// Preloaded into a `dialgate run` child (node --import): its wall clock runs DIALGATE_TEST_SKEW_MS
// ahead of this machine's (and Redis'), as a host with a drifting clock would.
const skew = Number(process.env.DIALGATE_TEST_SKEW_MS ?? 0);
const real = Date.now.bind(Date);
Date.now = () => real() + skew;
