//! `verify_user`: the browser user first signs in at the IdP (oidc-provider again, as an
//! OpenID provider: code + PKCE + nonce, ID token verified against its JWKS from
//! discovery) and must be the user the link was made for. Someone else holding the
//! link gets a 403 page and cannot attach their account to the victim's slot.

use super::{Stack, assert_connected_page, assert_security_headers, config, missing_link};
use crate::openbao::Upstream;
use crate::support::connect::{Proc, assert_absent, browse};

fn start(stack: &Stack, up: &Upstream) -> Proc {
    let yaml = config(
        &stack.connect_yaml(true, &stack.verify_user_yaml()),
        "    source: file\n    file: tokens/{user}.json\n",
        &stack.oauth_yaml(None),
        up,
        "",
    );
    Proc::start("run", &yaml, &[], &stack.env(&[]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_user_signs_in_then_connects() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let sk = start(&stack, &up);
    let link = missing_link(&sk, &stack, "alice").await;
    let page = browse(&link, "alice", &[]);
    assert_connected_page(&page, "alice");
    let visited: Vec<String> = page["visited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let auths: Vec<&String> = visited
        .iter()
        .filter(|u| u.starts_with(&format!("{}/auth?", stack.provider.issuer)))
        .collect();
    assert!(
        auths[0].contains("client_id=sidekey-connect") && auths[0].contains("nonce="),
        "{auths:?}"
    );
    assert!(auths[0].contains("scope=openid") && auths[0].contains("code_challenge_method=S256"));
    assert!(
        auths.iter().any(|u| u.contains("client_id=notion-app")),
        "{auths:?}"
    );
    // Two code exchanges: the IdP's and the provider's.
    assert_eq!(stack.provider.grants("authorization_code"), 2);
    let map: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sk.dir.path().join("tokens/alice.json")).unwrap(),
    )
    .unwrap();
    let r = sk.get("alice", "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        up.last_auth(),
        Some(format!("Bearer {}", map["access_token"].as_str().unwrap()))
    );
    let recs = sk.wait_connect_records(1);
    assert_eq!(
        recs.len(),
        1,
        "the sign-in step writes no record of its own"
    );
    assert_eq!(recs[0]["result"], "connected");
    let mut secrets = vec![
        map["access_token"].as_str().unwrap().to_string(),
        stack.idp_secret.clone(),
    ];
    secrets.extend(stack.provider.received_secrets());
    let out = sk.output();
    let body = page["body"].as_str().unwrap();
    assert_absent(&[("sidekey output", &out), ("page", body)], &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_else_holding_the_link_is_refused() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let sk = start(&stack, &up);
    let link = missing_link(&sk, &stack, "alice").await;
    let page = browse(&link, "mallory", &[]);
    assert_eq!(page["status"], 403, "{page}");
    let body = page["body"].as_str().unwrap();
    assert!(
        body.contains("mallory") && body.contains("another user"),
        "{body}"
    );
    assert_security_headers(&page["headers"]);
    assert!(!sk.dir.path().join("tokens/alice.json").exists());
    assert!(!sk.dir.path().join("tokens/mallory.json").exists());
    // Only the IdP's code was exchanged; the provider was never reached.
    assert_eq!(stack.provider.grants("authorization_code"), 1);
    let visited = page["visited"].to_string();
    assert!(!visited.contains("client_id=notion-app"), "{visited}");
    let rec = &sk.wait_connect_records(1)[0];
    assert_eq!(
        (&rec["result"], &rec["error"]),
        (&"denied".into(), &"user_mismatch".into())
    );
    assert_eq!(rec["user"], "alice");
    assert_eq!(sk.connect_total("notion-user", "denied").await, 1.0);
}
