// A WebSocket-over-HTTP backend written with js-grip's WebSocketContext,
// used by wsoverhttp_test.go behind tack. Argument: the Grip-Sig key.
// /publish takes the GRIP_URL of the proxy's publish API in ?grip=. Prints
// "READY <port>" once listening.
import http from 'node:http';
import {
  Publisher, WebSocketContext, WebSocketMessageFormat,
  decodeWebSocketEvents, encodeWebSocketEvents,
} from '@fanoutio/grip';

const [key] = process.argv.slice(2);
const verifier = new Publisher({ control_uri: 'http://127.0.0.1:1/', verify_key: key });

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://backend');
    if (url.pathname === '/publish') {
      const publisher = new Publisher(url.searchParams.get('grip'));
      await publisher.publishFormats('js-ws', new WebSocketMessageFormat('hello from js-grip ws'));
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('published\n');
      return;
    }
    const { isProxied, isSigned } = await verifier.validateGripSig(req.headers['grip-sig'] ?? null);
    if (!isProxied || !isSigned) {
      res.writeHead(403, { 'Content-Type': 'text/plain' });
      res.end('not signed by the GRIP proxy\n');
      return;
    }
    if (req.headers['content-type'] !== 'application/websocket-events') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('js-grip ws backend\n');
      return;
    }
    const meta = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.startsWith('meta-')) meta[k.slice(5)] = v;
    }
    const ws = new WebSocketContext(req.headers['connection-id'], meta, decodeWebSocketEvents(await readBody(req)));
    if (ws.isOpening()) {
      ws.accept();
      ws.subscribe('js-ws');
      ws.meta['user'] = 'alice';
    }
    while (ws.canRecv()) {
      const msg = ws.recv();
      if (msg === null) {
        ws.close();
        break;
      }
      ws.send(`echo ${msg} (user ${ws.meta['user'] ?? 'none'})`);
    }
    res.writeHead(200, ws.toHeaders());
    res.end(Buffer.from(encodeWebSocketEvents(ws.getOutgoingEvents())));
  } catch (err) {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end(String(err) + '\n');
  }
});
server.listen(0, '127.0.0.1', () => {
  console.log('READY ' + server.address().port);
});
