//! `rate:` in `sidekey check`: a good one passes, every mistake is one line naming
//! the file and the YAML path, exit 2.

use crate::support::*;

fn config(rate: &str) -> String {
    format!(
        "{}credentials:\n  bot: {{source: env, env: BOT}}\nroutes:\n  - name: ok\n    match: {{host: ok.test}}\n    auth: claw\n    credential: bot\n    rate: {{limit: 60, per: 1m}}\n  - name: api\n    match: {{host: api.test}}\n    auth: passthrough\n    rate: {rate}\n",
        yaml_head("rate-check")
    )
}

#[test]
fn check_accepts_good_rates_and_names_each_bad_one() {
    let (code, out, err) = Sidekey::check(&config("{limit: 5, per: 10s, key: route}"));
    assert_eq!(code, 0, "{out}{err}");
    let cases = [
        (
            "{limit: 0, per: 1m}",
            "routes[1].rate.limit: must be between 1",
        ),
        (
            "{limit: 5, per: 0ms}",
            "routes[1].rate.per: must be longer than 0",
        ),
        ("{limit: 5, per: a while}", "routes[1].rate.per:"),
        (
            "{limit: 5, per: 1m, key: tenant}",
            "routes[1].rate.key: unknown key `tenant`",
        ),
        (
            "{limit: 5, per: 1m, key: credential}",
            "routes[1].rate.key: `credential` needs a route with a credential",
        ),
        ("{limit: 5, per: 1m, window: 2}", "unknown field `window`"),
    ];
    for (rate, want) in cases {
        let (code, out, err) = Sidekey::check(&config(rate));
        assert_eq!(code, 2, "{rate}: {out}{err}");
        assert!(
            err.lines()
                .any(|l| l.contains("sidekey.yaml: ") && l.contains(want)),
            "{rate}: want a line with {want:?}, got:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
