#!/bin/sh
# record.sh FILE: websocketd upstream for the end-to-end tests. Appends
# every line (text message) it receives to FILE, and the line "EOF" when
# its stdin ends (the client went away), so a test can check what reached
# the upstream. Each line is appended with its own write, so FILE is always
# up to date; nothing is written to stdout, so the client never gets a
# message.
f=${1:-}
if [ -z "$f" ]; then
	echo "usage: record.sh FILE" >&2
	exit 2
fi
while IFS= read -r line || [ -n "$line" ]; do
	printf '%s\n' "$line" >>"$f" || exit 1
done
printf 'EOF\n' >>"$f"
