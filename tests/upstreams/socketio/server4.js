'use strict';
/*
 * server4.js: a socket.io 4 chat server (Engine.IO v4), WebSocket-only
 * unless --polling: the upstream that pollbridge's Engine.IO door relays
 * socket.io-client 4 polling sessions to. The chat is chat_common.js.
 * Prints "port N" when it listens. Options: --port N, --polling,
 * --max-http-buffer N (engine.io's maxHttpBufferSize), --cors ORIGIN,
 * --path P.
 */
const http = require('http');
const path = require('path');
const common = require('./chat_common.js');

const nm = process.env.PB_NODE_MODULES || path.join(__dirname, '..', 'node', 'node_modules');
const { Server } = require(path.join(nm, 'socket.io'));
const o = common.options(process.argv);

const httpServer = http.createServer();
const io = new Server(httpServer, Object.assign({
	transports: o.polling ? ['polling', 'websocket'] : ['websocket'],
	allowUpgrades: !o.polling,
	pingInterval: 5000,
	pingTimeout: 5000,
	path: o.path,
}, o.maxHttpBuffer ? { maxHttpBufferSize: o.maxHttpBuffer } : {},
o.cors ? { cors: { origin: o.cors, credentials: true } } : {}));
common.serve(io);
httpServer.listen(o.port, '127.0.0.1', () => console.log('port ' + httpServer.address().port));
process.on('SIGTERM', () => process.exit(0));
