#!/usr/bin/env bash
# Spark 4 needs Java >= 17. Install Debian's headless JRE when missing and we are root;
# otherwise say exactly what to do.
set -euo pipefail
need=17
major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'; }
if command -v java >/dev/null 2>&1 && [ "$(major)" -ge "$need" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Java >= $need not found: installing openjdk-17-jre-headless with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  command -v java >/dev/null 2>&1 && [ "$(major)" -ge "$need" ] && exit 0
fi
echo "ERROR: vidx needs Java >= $need for Spark (found: $(java -version 2>&1 | head -1 || echo none))." >&2
echo "Install it, e.g. 'sudo apt-get install openjdk-17-jre-headless', or set JAVA_HOME to a JDK 17+." >&2
exit 1
