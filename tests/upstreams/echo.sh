#!/bin/sh
# echo.sh: websocketd upstream for the end-to-end tests. Sends every line
# (text message) it receives straight back, until the client goes away.
# cat writes what it reads at once, so nothing waits in a stdio buffer.
exec cat
