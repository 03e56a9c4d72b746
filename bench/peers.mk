# bench/peers.mk: the peer benchmark's C tools (bench/peers.sh runs this).
# Not part of the product build. Usage: make -C bench -f peers.mk O=OUTDIR [CC=clang]
# (not named Makefile: .gitignore ignores every Makefile, automake's output).
CC = cc
CFLAGS = -O2 -g
WARN = -std=c11 -Wall -Wextra -Werror
O = .

all: $(O)/upstream $(O)/loadgen $(O)/baremhd $(O)/floor

$(O)/upstream: upstream.c
	$(CC) $(WARN) $(CFLAGS) -o $@ upstream.c `pkg-config --cflags --libs gnutls`

$(O)/loadgen: loadgen.c
	$(CC) $(WARN) $(CFLAGS) -o $@ loadgen.c

$(O)/baremhd: baremhd.c
	$(CC) $(WARN) $(CFLAGS) -o $@ baremhd.c `pkg-config --cflags --libs libmicrohttpd`

$(O)/floor: floor.c
	$(CC) $(WARN) $(CFLAGS) -o $@ floor.c

.PHONY: all
