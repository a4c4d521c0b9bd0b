#!/usr/bin/env bash
# Regenerate the development CA and the localhost server certificate.
# Dev-only material: never use these keys anywhere that matters.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- dev CA: EC P-256, 10 years -------------------------------------------
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
cat >"$tmp/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = wsguard dev CA
O = wsguard (development only)
[v3_ca]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
openssl req -new -x509 -sha256 -days 3650 -key ca.key -config "$tmp/ca.cnf" -out ca.crt

# --- localhost server cert: EC P-256, PKCS#8 key, 5 years ----------------
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out localhost.key
cat >"$tmp/leaf.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
O = wsguard (development only)
[v3_leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
CNF
openssl req -new -sha256 -key localhost.key -config "$tmp/leaf.cnf" -out "$tmp/localhost.csr"
openssl x509 -req -sha256 -days 1825 -in "$tmp/localhost.csr" \
    -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial "$tmp/ca.srl" \
    -extfile "$tmp/leaf.cnf" -extensions v3_leaf -out localhost.crt

chmod 600 ca.key localhost.key
openssl verify -CAfile ca.crt localhost.crt
