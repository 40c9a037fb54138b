//! A real OpenBao dev server as the IdP: its `identity/oidc` token endpoint issues
//! the JWTs and `/v1/identity/oidc/.well-known/keys` serves its JWKS.
//!
//! `bao` is found by `support::Tool::Bao`. Without it the test FAILS saying to run
//! `scripts/test.sh`: it is never skipped.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::{Response, api};
use crate::openbao::BaoProcess;
use crate::support;

/// The IdP: a dev server from the one launcher ([`BaoProcess`]) with a sync API.
pub struct OpenBao {
    pub addr: SocketAddr,
    root: String,
    process: BaoProcess,
}

impl OpenBao {
    /// Start `bao server -dev` on a free loopback port with a random root token.
    pub fn start() -> OpenBao {
        let process = support::block_on(BaoProcess::start_fresh());
        OpenBao {
            addr: process.addr,
            root: process.root_token.clone(),
            process,
        }
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// A call as root; panics on any status outside 2xx.
    pub fn root(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        self.call(&self.root, method, path, body)
    }

    /// A call with `token`; panics on any status outside 2xx.
    pub fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<Value> {
        let r: Response = api(
            self.addr,
            method,
            &format!("/v1/{path}"),
            Some(token),
            body.as_ref(),
        );
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
        (!r.body.trim().is_empty()).then(|| r.json())
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/v1/identity/oidc/.well-known/keys", self.addr)
    }

    /// The issuer OpenBao writes into its tokens, from its discovery document.
    pub fn issuer(&self) -> String {
        let r = api(
            self.addr,
            "GET",
            "/v1/identity/oidc/.well-known/openid-configuration",
            None,
            None,
        );
        r.json()["issuer"].as_str().expect("issuer").to_string()
    }

    /// An OIDC signing key and a role using it; returns the role's client_id (the
    /// `aud` of its tokens). The template adds `username` and `groups` claims.
    pub fn oidc_role(&self, key: &str, role: &str) -> String {
        self.root(
            "POST",
            &format!("identity/oidc/key/{key}"),
            Some(json!({"algorithm": "RS256", "allowed_client_ids": "*",
                        "rotation_period": "24h", "verification_ttl": "24h"})),
        );
        let template =
            r#"{"username": {{identity.entity.name}}, "groups": {{identity.entity.groups.names}}}"#;
        self.root(
            "POST",
            &format!("identity/oidc/role/{role}"),
            Some(json!({"key": key, "ttl": "10m", "template": template})),
        );
        let read = self
            .root("GET", &format!("identity/oidc/role/{role}"), None)
            .expect("role");
        read["data"]["client_id"]
            .as_str()
            .expect("client_id")
            .to_string()
    }

    /// Userpass login for `user`, tied to an entity of the same name in `groups`,
    /// allowed to read tokens for `roles`. Returns the user's client token.
    pub fn user_token(&self, user: &str, groups: &[&str], roles: &[&str]) -> String {
        let policy: String = roles
            .iter()
            .map(|r| format!("path \"identity/oidc/token/{r}\" {{ capabilities = [\"read\"] }}\n"))
            .collect();
        self.root(
            "PUT",
            &format!("sys/policies/acl/{user}-oidc"),
            Some(json!({"policy": policy})),
        );
        let auths = self.root("GET", "sys/auth", None).expect("auth list");
        if auths["data"]["userpass/"].is_null() {
            self.root(
                "POST",
                "sys/auth/userpass",
                Some(json!({"type": "userpass"})),
            );
        }
        let auths = self.root("GET", "sys/auth", None).expect("auth list");
        let accessor = auths["data"]["userpass/"]["accessor"]
            .as_str()
            .expect("accessor")
            .to_string();
        let password = format!("pw-{:016x}", fastrand::u64(..));
        self.root(
            "POST",
            &format!("auth/userpass/users/{user}"),
            Some(json!({"password": password, "token_policies": format!("{user}-oidc")})),
        );
        let entity = self
            .root("POST", "identity/entity", Some(json!({"name": user})))
            .expect("entity");
        let entity_id = entity["data"]["id"]
            .as_str()
            .expect("entity id")
            .to_string();
        self.root(
            "POST",
            "identity/entity-alias",
            Some(json!({"name": user, "canonical_id": entity_id, "mount_accessor": accessor})),
        );
        for g in groups {
            let path = format!("identity/group/name/{g}");
            let existing = api(
                self.addr,
                "GET",
                &format!("/v1/{path}"),
                Some(&self.root),
                None,
            );
            let mut members = vec![Value::from(entity_id.clone())];
            if existing.status == 200 {
                members.extend(
                    existing.json()["data"]["member_entity_ids"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            self.root("POST", &path, Some(json!({"member_entity_ids": members})));
        }
        let login = api(
            self.addr,
            "POST",
            &format!("/v1/auth/userpass/login/{user}"),
            None,
            Some(&json!({"password": password})),
        );
        assert_eq!(login.status, 200, "login {user}: {}", login.body);
        login.json()["auth"]["client_token"]
            .as_str()
            .expect("client token")
            .to_string()
    }

    /// `identity/oidc/token/<role>` read with the user's token: the JWT.
    pub fn id_token(&self, user_token: &str, role: &str) -> String {
        let r = self
            .call(
                user_token,
                "GET",
                &format!("identity/oidc/token/{role}"),
                None,
            )
            .expect("token");
        r["data"]["token"].as_str().expect("token").to_string()
    }

    pub fn rotate(&self, key: &str) {
        self.root(
            "POST",
            &format!("identity/oidc/key/{key}/rotate"),
            Some(json!({})),
        );
    }
}
