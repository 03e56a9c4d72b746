#!/bin/sh
# count.sh N: websocketd upstream for the end-to-end tests. Sends the lines
# "1" .. "N" as text messages, then exits, so the upstream closes the
# connection by itself. Note: when its program ends, websocketd drops the
# TCP connection without sending a close frame, so the client sees an
# abnormal closure (1006), not 1000.
n=${1:-}
case $n in
'' | *[!0-9]*)
	echo "usage: count.sh N (N a decimal number)" >&2
	exit 2
	;;
esac
i=1
while [ "$i" -le "$n" ]; do
	printf '%s\n' "$i"
	i=$((i + 1))
done
exit 0
