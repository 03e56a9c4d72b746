#!/usr/bin/env node
'use strict';
/*
 * build.js: makes pollbridge.min.js from pollbridge.js with terser
 * (`npm run build`; `node build.js --out FILE` writes elsewhere). terser is
 * taken from node_modules as usual, else from the test dependencies of the
 * pollbridge source tree (tests/upstreams/node/node_modules). The output
 * keeps the ES3 syntax of the source (terser's ie8 mode) and its licence
 * header; the same input always gives the same output.
 */
const fs = require('fs');
const path = require('path');

function loadTerser() {
	const tries = ['terser', path.join(__dirname, '..', '..', 'tests', 'upstreams', 'node', 'node_modules', 'terser')];
	for (const t of tries) {
		try { return require(t); } catch (e) { /* next */ }
	}
	console.error('build.js: terser not found (npm install --no-save terser)');
	process.exit(1);
}

async function main() {
	const outArg = process.argv.indexOf('--out');
	const out = outArg > 0 ? process.argv[outArg + 1] : path.join(__dirname, 'pollbridge.min.js');
	const src = fs.readFileSync(path.join(__dirname, 'pollbridge.js'), 'utf8');
	const version = JSON.parse(fs.readFileSync(path.join(__dirname, 'package.json'), 'utf8')).version;
	const terser = loadTerser();
	const res = await terser.minify({ 'pollbridge.js': src }, {
		ecma: 5,
		ie8: true,
		compress: { passes: 2 },
		mangle: true,
		format: { preamble: '/*! pollbridge.js ' + version + ': a WebSocket over pollbridge\'s HTTP API. See README.md. */', ascii_only: true },
	});
	fs.writeFileSync(out, res.code + '\n');
}

main().catch((e) => { console.error('build.js: ' + (e && e.message || e)); process.exit(1); });
