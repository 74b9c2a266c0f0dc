#!/usr/bin/env bash
# Makes a throwaway test CA and a leaf certificate for localhost / 127.0.0.1 / ::1 with
# the openssl CLI (ECDSA P-256, valid 30 days), for the benchmarks and manual tries:
#   scripts/test-cert.sh DIR   ->  DIR/ca.pem  DIR/cert.pem  DIR/key.pem
#   wsloop echo --tls-cert DIR/cert.pem --tls-key DIR/key.pem
# Clients trust DIR/ca.pem (curl --cacert, Python ssl cafile, Node `ca`). The Rust tests
# make theirs with rcgen instead; the Python and Node tests call this script.
set -euo pipefail
dir=${1:?usage: scripts/test-cert.sh DIR}
mkdir -p "$dir"
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 30 -subj "/CN=wsloop test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
# shellcheck disable=SC2086
openssl req $ec -keyout key.pem -out leaf.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile leaf.ext -out cert.pem 2>/dev/null
rm -f leaf.csr leaf.ext ca.srl
