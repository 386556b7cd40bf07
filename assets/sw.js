// lorabert's service worker: keeps the page's own files (the HTML, its script, the wasm, the CSS)
// so the page opens offline after a first visit. Network first, so a new build is picked up when
// online; the cached copy when the network fails. Model and data files are not handled here: the
// page keeps those itself in Cache Storage with their SHA-256 (src/web/cache.rs) and reads them
// from there before any request is made.
const CACHE = 'lorabert-page-v1';
const PAGE_FILE = /(\/|\.html|\.js|\.wasm|\.css)$/;

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin || !PAGE_FILE.test(url.pathname)) return;
  e.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const resp = await fetch(e.request);
      if (resp.ok) await cache.put(e.request, resp.clone());
      return resp;
    } catch (err) {
      const hit = await cache.match(e.request, { ignoreSearch: true });
      if (hit) return hit;
      throw err;
    }
  })());
});
