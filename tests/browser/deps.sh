# deps.sh: sourced by the browser test scripts (run.sh, sockjs.sh,
# socketio.sh) to install playwright-core and acorn into their shared cache
# $deps, one install at a time: make check runs the scripts in parallel, npm
# would clobber a concurrent install, and an install of fewer packages would
# prune the others. Uses the caller's $deps, $tmp, show() and missing().
browser_deps_install() {
	mkdir -p "$deps" 2>/dev/null
	if command -v flock >/dev/null 2>&1 && exec 9>"$deps/.install.lock"; then
		flock 9
	fi
	if [ ! -f "$deps/node_modules/playwright-core/package.json" ] ||
	   [ ! -f "$deps/node_modules/acorn/package.json" ]; then
		command -v npm >/dev/null 2>&1 || missing "npm is not installed (needed for playwright-core)"
		npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$deps" \
			playwright-core acorn >"$tmp/npm.log" 2>&1 ||
			{ show "$tmp/npm.log" 5; missing "npm install playwright-core acorn failed"; }
	fi
	exec 9>&-
}
