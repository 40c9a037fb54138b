# Vault policy `sidekey-connect`: what the connect service (connect-deployment.yaml) may do.
#   vault policy write sidekey-connect deploy/kubernetes/vault-policy-connect.hcl
#   vault write auth/kubernetes/role/sidekey-connect \
#     bound_service_account_names=sidekey-connect bound_service_account_namespaces=agents \
#     policies=sidekey-connect ttl=1h
# It reads the OAuth apps' client ids and secrets, and writes the tokens users connect
# (check-and-set: it reads the current version first).
path "secret/data/claws/*" {
  capabilities = ["read"]
}

path "secret/data/users/*" {
  capabilities = ["read", "create", "update"]
}
