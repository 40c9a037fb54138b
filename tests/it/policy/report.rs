//! Report mode against the real binary: a report-mode `auth: deny` route, an
//! allow-listed claw in report mode, and `default: report`. The refused-by-policy
//! call goes out with no credential (the upstream sees none), its audit record says
//! `decision: "report"` with the error enforcement would return, and the metrics
//! count it under `decision="report"`; calls the policy allows keep their credential.

use super::metric;
use crate::support::*;

const BOT: &str = "bot-secret-report-91ce";

fn config(up: &Upstream) -> String {
    format!(
        "{}default: report\nupstreams:\n  api.test: {up}\n  hr.test: {up}\n  elsewhere.test: {up}\n\
credentials:\n  bot: {{source: env, env: BOT_TOKEN}}\n\
routes:\n\
  - {{name: no-admin, match: {{host: api.test, path: \"/admin/*\"}}, auth: deny, enforce: report}}\n\
  - {{name: api, match: {{host: api.test}}, auth: claw, credential: bot}}\n\
  - {{name: hr, match: {{host: hr.test}}, auth: claw, credential: bot, allow: {{users: [alice]}}, enforce: report}}\n",
        yaml_head("report-agent"),
        up = up.host_port()
    )
}

/// (request, identity, the route, the error enforcement would answer with)
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_go_out_uncredentialed_and_are_audited_as_report() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up), &[("BOT_TOKEN", BOT)]);
    let p = sk.proxy_addr;
    let alice = [("x-sidekey-user", "alice")];
    let bob = [("x-sidekey-user", "bob")];
    let cases: [Case; 4] = [
        (
            "http://api.test/admin/users",
            &alice,
            Some("no-admin"),
            "route_denied",
        ),
        (
            "http://hr.test/people",
            &bob,
            Some("hr"),
            "user_not_allowed",
        ),
        (
            "http://hr.test/people",
            &[],
            Some("hr"),
            "identity_required",
        ),
        ("http://elsewhere.test/x", &alice, None, "route_denied"),
    ];
    for (i, (url, who, route, code)) in cases.iter().enumerate() {
        let r = proxy_get(p, url, who).await;
        assert_eq!(r.status, 200, "{url}: forwarded: {}", r.text());
        assert_eq!(r.header("x-sidekey-error"), None);
        let seen = up.wait_requests(i + 1, std::time::Duration::from_secs(10));
        let last = &seen[i];
        assert!(
            !last.has_header("authorization"),
            "{url}: no credential went out: {last:?}"
        );
        assert!(
            !last.has_header("x-sidekey-user"),
            "identity header removed"
        );
        let rec = sk.audit_for(&request_id(&r));
        assert_eq!(rec["decision"], "report", "{rec}");
        assert_eq!(rec["error"], *code, "{rec}");
        assert_eq!(rec["route"].as_str(), *route, "{rec}");
        assert_eq!(rec["auth_context"], "none", "{rec}");
        assert!(rec["credential"].is_null(), "{rec}");
        assert_eq!(rec["status"], 200);
    }
    // What the policy allows keeps its credential.
    let ok = proxy_get(p, "http://hr.test/people", &alice).await;
    assert_eq!(ok.status, 200);
    let ok_rec = sk.audit_for(&request_id(&ok));
    assert_eq!(
        (ok_rec["decision"].as_str(), ok_rec["credential"].as_str()),
        (Some("allow"), Some("bot"))
    );
    let all = up.wait_requests(5, std::time::Duration::from_secs(10));
    assert_eq!(
        all[4].header("authorization"),
        Some(format!("Bearer {BOT}").as_str())
    );
    let reported = |route: &'static str| {
        [
            ("route", route),
            ("auth_context", "none"),
            ("decision", "report"),
            ("status_class", "2xx"),
        ]
    };
    assert_eq!(
        metric(&sk, "sidekey_requests_total", &reported("hr")).await,
        2.0
    );
    assert_eq!(
        metric(&sk, "sidekey_requests_total", &reported("no-admin")).await,
        1.0
    );
    assert_eq!(
        metric(&sk, "sidekey_requests_total", &reported("none")).await,
        1.0
    );
    assert!(!sk.stdout_text().contains(BOT) && !sk.stderr_text().contains(BOT));
}
