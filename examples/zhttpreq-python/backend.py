#!/usr/bin/env python3
"""A backend with no web server: Pushpin's README example (Python 3).

It connects a REP socket to a `zhttpreq/` route target and answers each
request with a tnetstring zhttp response. A request for /stream is held
open by the proxy (Grip-Hold: stream) and receives what is published to
the channel; any other path gets a plain answer.

Routes file:   * zhttpreq/tcp://127.0.0.1:10000
Needs:         apt-get install -y python3-zmq
Run:           python3 examples/zhttpreq-python/backend.py tcp://127.0.0.1:10000
Publish:       bin/tack publish test "hello"
"""

import sys
from urllib.parse import urlsplit

import zmq


# A minimal tnetstring codec (https://tnetstrings.info): enough for zhttp.

def dumps(v):
    if isinstance(v, bool):
        payload, tag = (b'true' if v else b'false'), b'!'
    elif isinstance(v, int):
        payload, tag = str(v).encode(), b'#'
    elif isinstance(v, str):
        payload, tag = v.encode(), b','
    elif isinstance(v, bytes):
        payload, tag = v, b','
    elif isinstance(v, dict):
        payload, tag = b''.join(dumps(k) + dumps(x) for k, x in v.items()), b'}'
    elif isinstance(v, (list, tuple)):
        payload, tag = b''.join(dumps(x) for x in v), b']'
    elif v is None:
        payload, tag = b'', b'~'
    else:
        raise TypeError('cannot encode %r' % (v,))
    return str(len(payload)).encode() + b':' + payload + tag


def loads(data):
    v, rest = _parse(data)
    if rest:
        raise ValueError('trailing data')
    return v


def _parse(data):
    colon = data.index(b':')
    size = int(data[:colon])
    payload = data[colon + 1:colon + 1 + size]
    if len(payload) != size or len(data) < colon + 2 + size:
        raise ValueError('truncated')
    tag, rest = data[colon + 1 + size:colon + 2 + size], data[colon + 2 + size:]
    if tag == b',':
        return payload, rest
    if tag == b'#':
        return int(payload), rest
    if tag == b'!':
        return payload == b'true', rest
    if tag == b'~':
        return None, rest
    if tag == b']':
        out = []
        while payload:
            x, payload = _parse(payload)
            out.append(x)
        return out, rest
    if tag == b'}':
        out = {}
        while payload:
            k, payload = _parse(payload)
            x, payload = _parse(payload)
            out[k.decode()] = x
        return out, rest
    raise ValueError('unknown tag %r' % tag)


def main():
    spec = sys.argv[1] if len(sys.argv) > 1 else 'tcp://127.0.0.1:10000'
    channel = sys.argv[2] if len(sys.argv) > 2 else 'test'

    zmq_context = zmq.Context()
    sock = zmq_context.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(spec)
    print('answering zhttpreq requests from %s' % spec, flush=True)

    while True:
        req = loads(sock.recv()[1:])  # strip the 'T' type prefix
        path = urlsplit(req['uri'].decode()).path if 'uri' in req else ''

        if path == '/stream':
            resp = {
                'id': req['id'],
                'code': 200,
                'reason': 'OK',
                'headers': [
                    ['Grip-Hold', 'stream'],
                    ['Grip-Channel', channel],
                    ['Content-Type', 'text/plain'],
                ],
                'body': 'welcome to the stream\n',
            }
        else:
            resp = {
                'id': req['id'],
                'code': 200,
                'reason': 'OK',
                'headers': [['Content-Type', 'text/plain']],
                'body': 'hello there from python (%s %s)\n' % (req.get('method', b'').decode(), path),
            }

        sock.send(b'T' + dumps(resp))


if __name__ == '__main__':
    main()
