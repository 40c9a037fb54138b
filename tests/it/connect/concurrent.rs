//! Two users' callbacks at the same moment: each gets their own token, stored at their
//! own path, and each user's next call is injected with their own.

use super::{Stack, config, missing_link};
use crate::openbao::Upstream;
use crate::support::connect::{Proc, browse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_connecting_at_once_each_get_their_own_token() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let yaml = config(
        &stack.connect_yaml(true, ""),
        "    source: file\n    file: tokens/{user}.json\n",
        &stack.oauth_yaml(None),
        &up,
        "",
    );
    let sk = Proc::start("run", &yaml, &[], &stack.env(&[]));
    let prefix = format!("{}/callback", stack.public_url());
    let mut stops = Vec::new();
    for user in ["gina", "hank"] {
        let link = missing_link(&sk, &stack, user).await;
        let p = prefix.clone();
        stops.push(std::thread::spawn(move || {
            browse(&link, user, &["--stop-at", &p])
        }));
    }
    let stops: Vec<serde_json::Value> = stops.into_iter().map(|h| h.join().unwrap()).collect();
    let base = stack.public_url().len();
    let path = |i: usize| stops[i]["stopped_at"].as_str().unwrap()[base..].to_string();
    let cookie = |i: usize| stops[i]["cookie"].as_str().unwrap().to_string();
    let (p0, p1, c0, c1) = (path(0), path(1), cookie(0), cookie(1));
    let (r0, r1) = tokio::join!(sk.page(&p0, Some(&c0)), sk.page(&p1, Some(&c1)));
    assert_eq!(
        (r0.status, r1.status),
        (200, 200),
        "{} {}",
        r0.body,
        r1.body
    );
    assert!(r0.body.contains("gina") && r1.body.contains("hank"));

    let token = |u: &str| {
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sk.dir.path().join(format!("tokens/{u}.json"))).unwrap(),
        )
        .unwrap();
        m["access_token"].as_str().unwrap().to_string()
    };
    let (tg, th) = (token("gina"), token("hank"));
    assert_ne!(tg, th);
    for (user, tok) in [("gina", &tg), ("hank", &th)] {
        let r = sk.get(user, "http://api.test/v1/pages").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(up.last_auth(), Some(format!("Bearer {tok}")));
    }
    assert_eq!(sk.connect_total("notion-user", "connected").await, 2.0);
    assert_eq!(stack.provider.grants("authorization_code"), 2);
}
