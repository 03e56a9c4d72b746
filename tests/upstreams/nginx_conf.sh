#!/bin/sh
# nginx_conf.sh: the whole nginx.conf that the balancer tests run, made from
# the shipped contrib/lb/nginx.conf with only its addresses replaced: nginx
# listens on 127.0.0.1:PORT, bridges 8081 and 8082 become A and B, the third
# bridge's line is dropped. Around it go the main-context lines a private
# nginx needs (pid, logs and temp paths under DIR, root's "user root;").
# The access log names the bridge that answered each request:
#   $upstream_addr "$request" $status $upstream_status
# Usage: nginx_conf.sh PORT A B DIR ACCESS_LOG ERROR_LOG > nginx.conf
# Exits 1, saying which line is gone, if contrib/lb/nginx.conf no longer has
# a line it replaces (the tests would otherwise run something else).
set -u
if [ $# -ne 6 ]; then
	echo "usage: nginx_conf.sh PORT A B DIR ACCESS_LOG ERROR_LOG" >&2
	exit 2
fi
port=$1 a=$2 b=$3 dir=$4 access=$5 errors=$6
contrib=$(cd "$(dirname "$0")/../.." && pwd)/contrib/lb/nginx.conf

for line in '^ *listen 80;$' '127\.0\.0\.1:8081' '127\.0\.0\.1:8082' '^ *server 127\.0\.0\.1:8083 '; do
	if ! grep -q -e "$line" "$contrib"; then
		echo "nginx_conf.sh: $contrib has no line matching '$line': update tests/upstreams/nginx_conf.sh" >&2
		exit 1
	fi
done

[ "$(id -u)" = 0 ] && echo "user root;"
cat <<EOF
worker_processes 1;
daemon off;
pid $dir/pid;
error_log $errors warn;
events { worker_connections 512; }
http {
log_format up '\$upstream_addr "\$request" \$status \$upstream_status';
access_log $access up;
client_body_temp_path $dir/client_body;
proxy_temp_path $dir/proxy;
fastcgi_temp_path $dir/fastcgi;
uwsgi_temp_path $dir/uwsgi;
scgi_temp_path $dir/scgi;
EOF
sed -e "s/^\( *\)listen 80;\$/\1listen 127.0.0.1:$port;/" \
	-e "s/127\.0\.0\.1:8081/$a/g" -e "s/127\.0\.0\.1:8082/$b/g" \
	-e '/^ *server 127\.0\.0\.1:8083 /d' "$contrib"
echo "}"
