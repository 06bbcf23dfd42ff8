#!/bin/sh
# browser-deps.sh installs what the browser tests (test/browser) need: a
# headless Chromium. It does nothing when one is already on PATH. It uses
# Debian's chromium package, so it needs root (CI runs as root); elsewhere
# install chromium yourself or let the tests skip.
set -eu

for b in chromium chromium-browser google-chrome-stable google-chrome; do
	if command -v "$b" >/dev/null 2>&1; then
		echo "browser-deps: $b is installed: $(command -v "$b")"
		exit 0
	fi
done

if [ "$(id -u)" != 0 ]; then
	echo "browser-deps: chromium is missing and this is not root: install Debian's chromium package (apt-get install chromium) or the browser tests skip" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "browser-deps: chromium is missing and there is no apt-get: install Chromium by hand" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "browser-deps: installed $(command -v chromium)"
