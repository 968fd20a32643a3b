// An HTTP server the way node programs are written: require('http').createServer(...).listen(PORT)
// with no host, which listens on "::" (IPv4 and IPv6, dual-stack) where the host has IPv6. It
// serves the files of DIR from memory (GET /NAME, 404 otherwise) and prints "listening".
//
// usage: node dualstack_server.js PORT DIR
'use strict';
const http = require('http'), fs = require('fs'), path = require('path');
const port = Number(process.argv[2]), dir = process.argv[3];
const files = {};
for (const f of fs.readdirSync(dir)) files['/' + f] = fs.readFileSync(path.join(dir, f));
http.createServer((req, res) => {
  const b = files[req.url];
  if (!b) {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, { 'Content-Length': b.length, 'Content-Type': 'application/octet-stream' });
  res.end(b);
}).listen(port, () => console.log('listening'));
