//! Route `allow:` lists with JWT identities: groups and users from verified tokens.

use crate::jwt_support::keys::{claims, es256, jwks, sign};
use crate::jwt_support::{Sidekey, TestServer, bearer, config, write_secrets};
use serde_json::json;

const ID: &str = "x-sidekey-user";

#[test]
fn allow_lists_admit_listed_groups_and_users_and_refuse_the_rest() {
    let upstream = TestServer::start("{}");
    let es = es256("k1");
    let doc = jwks(&[&es]);
    let sk = Sidekey::start(&config("jwks_file: jwks.json", upstream.addr), |d| {
        write_secrets(d);
        std::fs::write(d.join("jwks.json"), &doc).unwrap();
    });
    let alice = bearer(&sign(&es, &claims("alice", &["hr-admins", "staff"])));
    let bob = bearer(&sign(&es, &claims("bob", &["staff"])));

    // Group allow-list on a claw route.
    let r = sk.get("api.test", "/hr/employees", &[(ID, &alice)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        upstream.last().unwrap().header("authorization"),
        Some("Bearer bot-token")
    );
    let audit = sk.audit_for(&r.request_id());
    assert_eq!(audit["user"], "alice");
    assert_eq!(audit["groups"], json!(["hr-admins", "staff"]));
    assert_eq!(audit["auth_context"], "system_service");

    let r = sk.get("api.test", "/hr/employees", &[(ID, &bob)]);
    assert_eq!(
        (r.status, r.error().as_deref()),
        (403, Some("user_not_allowed"))
    );
    let audit = sk.audit_for(&r.request_id());
    assert_eq!(
        (audit["user"].as_str(), audit["groups"].clone()),
        (Some("bob"), json!(["staff"]))
    );
    assert_eq!(
        (audit["error"].as_str(), audit["decision"].as_str()),
        (Some("user_not_allowed"), Some("deny"))
    );

    let r = sk.get("api.test", "/hr/employees", &[]);
    assert_eq!(
        (r.status, r.error().as_deref()),
        (401, Some("identity_required"))
    );

    // User allow-list.
    let r = sk.get("api.test", "/alice/notes", &[(ID, &alice)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = sk.get("api.test", "/alice/notes", &[(ID, &bob)]);
    assert_eq!(
        (r.status, r.error().as_deref()),
        (403, Some("user_not_allowed"))
    );
    assert_eq!(upstream.hits(), 2, "only the allowed calls went upstream");
}
