# Vault policy `hr-ops-agent`: what sidekey in the hr-ops-agent pods may do.
#   vault policy write hr-ops-agent deploy/kubernetes/vault-policy.hcl
# Paths are KV v2 under the `secret/` mount (config `vault.kv_mount: secret`): the API
# path of `claws/slack-bot` is `secret/data/claws/slack-bot`.

# Claws (system_service credentials and OAuth client ids/secrets): read only.
path "secret/data/claws/*" {
  capabilities = ["read"]
}

# Per-user credentials (assistant routes): read, and write back a rotated OAuth
# refresh token. sidekey writes with check-and-set (options.cas = the version it
# read), so two sidecars refreshing one user's token can never lose a rotation.
# To make CAS mandatory for every writer (including your connect flow), set
# `cas_required` on the mount or on each key's metadata; see vault-role.md.
path "secret/data/users/*" {
  capabilities = ["read", "create", "update"]
}
