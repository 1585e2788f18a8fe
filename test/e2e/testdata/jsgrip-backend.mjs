// A GRIP backend written the way js-grip's README shows, used by
// jsgrip_test.go behind tack. Argument: the Grip-Sig key. /publish takes
// the GRIP_URL of the proxy's publish API in ?grip=. Prints "READY <port>"
// once listening.
import http from 'node:http';
import { GripInstruct, Publisher } from '@fanoutio/grip';

const [key] = process.argv.slice(2);
const verifier = new Publisher({ control_uri: 'http://127.0.0.1:1/', verify_key: key });

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://backend');
    if (url.pathname === '/publish') {
      // Publishing happens on the backend's own initiative; the test asks
      // for it over HTTP.
      const kind = url.searchParams.get('kind');
      const publisher = new Publisher(url.searchParams.get('grip'));
      if (kind === 'stream') {
        await publisher.publishHttpStream('js-stream', 'hello from js-grip\n');
      } else {
        await publisher.publishHttpResponse('js-poll', 'answer from js-grip\n');
      }
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
    const gi = new GripInstruct();
    if (url.pathname === '/stream') {
      gi.addChannel('js-stream');
      gi.setHoldStream();
      res.writeHead(200, { ...gi.toHeaders(), 'Content-Type': 'text/plain' });
      res.end('[js-grip stream]\n');
    } else if (url.pathname === '/poll') {
      gi.addChannel('js-poll');
      gi.setHoldLongPoll(20);
      res.writeHead(200, { ...gi.toHeaders(), 'Content-Type': 'text/plain' });
      res.end('timed out\n');
    } else {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('js-grip backend\n');
    }
  } catch (err) {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end(String(err) + '\n');
  }
});
server.listen(0, '127.0.0.1', () => {
  console.log('READY ' + server.address().port);
});
