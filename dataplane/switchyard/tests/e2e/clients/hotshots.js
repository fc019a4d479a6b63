// Drives Switchyard with the real npm `hot-shots` DogStatsD client.
// Usage: node hotshots.js PORT
const StatsD = require('hot-shots');

const port = Number(process.argv[2]);
const c = new StatsD({
  host: '127.0.0.1',
  port,
  globalTags: { env: 'prod' },
  maxBufferSize: 1000, // pack several lines per datagram
  bufferFlushInterval: 50,
  errorHandler: (e) => { console.error(e); process.exitCode = 1; },
});

for (let i = 0; i < 20; i++) c.increment('hs.views', 1, { route: 'home' });
c.increment('hs.views', 5, ['route:home']);
c.gauge('hs.depth', 42, ['shard:1']);
c.gaugeDelta('hs.depth', -3, ['shard:1']); // DogStatsD dialect: sets -3
for (let v = 1; v <= 4; v++) c.histogram('hs.size', v);
c.timing('hs.lat', 12);
c.set('hs.users', 'a');
c.set('hs.users', 'b');
c.event('Deploy', 'done', { alert_type: 'success' });
c.check('hs.ok', c.CHECKS.OK);
c.close((err) => { if (err) { console.error(err); process.exitCode = 1; } });
