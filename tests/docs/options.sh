#!/bin/sh
# tests/docs/options.sh: the documentation names every option of the daemon.
# Each option `pollbridge --help` prints must appear in
#   docs/API.md           the "Command line" synopsis and its options table,
#   contrib/pollbridge.8  the SYNOPSIS and an item of OPTIONS,
#   README.md             the "Command line" synopsis;
# and every option those three synopses name must exist in --help. One TAP
# line per option and place, so a failure says exactly which option is
# missing from which file. Uses $PB_BIN (set by make check), else the
# build-plain binary; the documents are found next to this script.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PB_BIN=${PB_BIN:-$top/build-plain/src/pollbridge}
api=$top/docs/API.md
man=$top/contrib/pollbridge.8
readme=$top/README.md

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pb-docs.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

for f in "$api" "$man" "$readme"; do
	[ -r "$f" ] || { echo "Bail out! cannot read $f"; exit 1; }
done
if ! "$PB_BIN" --help >"$tmp/help" 2>"$tmp/help.err"; then
	echo "Bail out! $PB_BIN --help failed: $(head -n 1 "$tmp/help.err")"
	exit 1
fi

# The --options in a text, one per line, sorted and unique.
options_in() {
	grep -o -e '--[a-z][a-z0-9-]*' "$1" | sort -u
}

# The first ``` block of a Markdown file's "## Command line" section.
md_synopsis() {
	awk '/^## Command line/ { s = 1; next }
	     s && /^## / { exit }
	     s && /^```/ { if (inb) exit; inb = 1; next }
	     inb { print }' "$1"
}

# The first cells of the option rows of a Markdown file's "## Command line"
# section: the table lines whose first cell names an option.
md_option_rows() {
	awk -F'|' '/^## Command line/ { s = 1; next }
	     s && /^## / { exit }
	     s && /^\|/ && $2 ~ /`--/ { print $2 }' "$1"
}

# A man page section (".SH NAME" up to the next .SH), with \- turned into -.
man_section() {
	sed 's/\\-/-/g' "$2" | awk -v want="$1" '/^\.SH / { s = ($2 == want); next } s { print }'
}

# The item headers of a man page section: the line after each .TP or .TQ.
man_items() {
	man_section "$1" "$2" | awk 'hdr { print; hdr = 0 } /^\.(TP|TQ)/ { hdr = 1 }'
}

options_in "$tmp/help" >"$tmp/opts"
md_synopsis "$api" >"$tmp/api.synopsis"
md_option_rows "$api" >"$tmp/api.table"
man_section SYNOPSIS "$man" >"$tmp/man.synopsis"
man_items OPTIONS "$man" >"$tmp/man.options"
md_synopsis "$readme" >"$tmp/readme.synopsis"

n=0
failed=0
: >"$tmp/tap"
# One TAP line: check STATUS (0 = ok) and a description.
tap() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2" >>"$tmp/tap"
	else
		echo "not ok $n - $2" >>"$tmp/tap"
		failed=$((failed + 1))
	fi
}

# 0 if option $1 appears, as a whole name, in file $2.
has() {
	grep -Eq -e "$1([^a-z0-9-]|\$)" "$2"
}

count=$(wc -l <"$tmp/opts")
[ "$count" -ge 20 ] && st=0 || st=1
tap $st "--help lists $count options (at least 20 expected)"

for place in "api.synopsis:docs/API.md (Command line synopsis)" \
	     "api.table:docs/API.md (Command line options table)" \
	     "man.synopsis:contrib/pollbridge.8 (SYNOPSIS)" \
	     "man.options:contrib/pollbridge.8 (an item of OPTIONS)" \
	     "readme.synopsis:README.md (Command line synopsis)"; do
	file=${place%%:*}
	what=${place#*:}
	[ -s "$tmp/$file" ] && st=0 || st=1
	tap $st "$what found"
done

while read -r opt; do
	for place in "api.synopsis:docs/API.md (Command line synopsis)" \
		     "api.table:docs/API.md (Command line options table)" \
		     "man.synopsis:contrib/pollbridge.8 (SYNOPSIS)" \
		     "man.options:contrib/pollbridge.8 (an item of OPTIONS)" \
		     "readme.synopsis:README.md (Command line synopsis)"; do
		file=${place%%:*}
		what=${place#*:}
		if has "$opt" "$tmp/$file"; then
			tap 0 "$opt in $what"
		else
			tap 1 "$opt missing from $what"
		fi
	done
done <"$tmp/opts"

# The other way round: a synopsis must not name an option that is gone.
for place in "api.synopsis:docs/API.md (Command line synopsis)" \
	     "man.synopsis:contrib/pollbridge.8 (SYNOPSIS)" \
	     "readme.synopsis:README.md (Command line synopsis)"; do
	file=${place%%:*}
	what=${place#*:}
	options_in "$tmp/$file" >"$tmp/$file.opts"
	while read -r opt; do
		if grep -qx -e "$opt" "$tmp/opts"; then
			tap 0 "$opt of $what is in --help"
		else
			tap 1 "$opt of $what is not an option of --help"
		fi
	done <"$tmp/$file.opts"
done

echo "1..$n"
cat "$tmp/tap"
[ "$failed" -eq 0 ]
