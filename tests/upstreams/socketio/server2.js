'use strict';
/*
 * server2.js: a socket.io 2.x chat server (Engine.IO v3), WebSocket-only
 * unless --polling: the upstream for socket.io-client 2 polling sessions
 * through pollbridge. The chat is chat_common.js. Prints "port N" when it
 * listens. Options: --port N, --polling, --max-http-buffer N,
 * --path P.
 */
const http = require('http');
const path = require('path');
const common = require('./chat_common.js');

const nm = process.env.PB_NODE_MODULES || path.join(__dirname, '..', 'node', 'node_modules');
const io2 = require(path.join(nm, 'socket.io-v2'));
const o = common.options(process.argv);

const httpServer = http.createServer();
const io = io2(httpServer, Object.assign({
	transports: o.polling ? ['polling', 'websocket'] : ['websocket'],
	allowUpgrades: !o.polling,
	pingInterval: 5000,
	pingTimeout: 5000,
	path: o.path,
}, o.maxHttpBuffer ? { maxHttpBufferSize: o.maxHttpBuffer } : {}));
common.serve(io);
httpServer.listen(o.port, '127.0.0.1', () => console.log('port ' + httpServer.address().port));
process.on('SIGTERM', () => process.exit(0));
