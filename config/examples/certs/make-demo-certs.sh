#!/usr/bin/env bash
# Makes a fresh demo CA and a localhost certificate signed by it (ECDSA P-256, 20 years), as the
# files shipped here were made. DEMO ONLY: the key is public in this repository. The CA's key is
# thrown away, so nothing else can ever be signed by the CA you trust for the demo.
# Usage: config/examples/certs/make-demo-certs.sh [DIR]   (default: this directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$work/ca-key.pem"
openssl req -x509 -new -key "$work/ca-key.pem" -sha256 -days 7300 \
  -subj "/CN=lb demo CA (DEMO ONLY, NEVER TRUST IN PRODUCTION)" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$out/demo-ca.pem"
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$out/localhost-key.pem"
openssl req -new -key "$out/localhost-key.pem" -subj "/CN=localhost" -out "$work/localhost.csr"
openssl x509 -req -in "$work/localhost.csr" -CA "$out/demo-ca.pem" -CAkey "$work/ca-key.pem" \
  -CAcreateserial -CAserial "$work/ca.srl" -days 7300 -sha256 \
  -extfile "$here/openssl-leaf.cnf" -out "$out/localhost.pem"
echo "wrote $out/demo-ca.pem, $out/localhost.pem and $out/localhost-key.pem"
