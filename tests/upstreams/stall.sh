#!/bin/sh
# stall.sh: websocketd upstream for the end-to-end tests that never reads
# what the client sends and never sends anything. Once the pipe to it and
# the socket buffers are full, the client's writes stall, so a bridge's send
# queue for that session fills up (429 queue_full). websocketd ends it when
# the client goes away; it also exits by itself, checking every second,
# once websocketd (its parent) is gone, so a killed websocketd leaves no
# stray process behind.
while kill -0 "$PPID" 2>/dev/null; do
	sleep 1
done
