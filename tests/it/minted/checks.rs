//! `sidekey check` on the minted sources: each mistake named by its YAML path, exit 2.

use super::app_key;
use crate::support::{ConfigDir, Sidekey, yaml_head};

fn check(dir: &ConfigDir, body: &str) -> (i32, String) {
    let (code, _out, err) = Sidekey::check_in(dir, &format!("{}{body}", yaml_head("check")), &[]);
    (code, err)
}

#[test]
fn minted_sources_are_checked_with_their_yaml_paths() {
    let dir = ConfigDir::new();
    dir.write("app.pem", &app_key().0);
    dir.write(
        "bad.pem",
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    dir.write(
        "sa.json",
        r#"{"type": "service_account", "client_email": "a@b"}"#,
    );
    let ok = "credentials:
  gh: {source: github_app, app_id: 1, installation_id: 2, private_key: {file: app.pem}, permissions: {issues: write}}
  sts: {source: token_exchange, token_url: \"https://sts.test/token\", audience: notion}
  aws: {source: file, file: aws.json, inject: {aws_sigv4: {region: us-east-1, service: bedrock}}}
routes:
  - {name: gh, match: {host: api.github.com}, auth: claw, credential: gh}
  - {name: aws, match: {host: bedrock-runtime.us-east-1.amazonaws.com}, auth: claw, credential: aws}
";
    let (code, err) = check(&dir, ok);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("credentials.sts.source") && err.contains("identity.mode: jwt"),
        "token_exchange needs jwt identities: {err}"
    );
    assert!(
        !err.contains("credentials.gh") && !err.contains("credentials.aws"),
        "nothing else is wrong: {err}"
    );

    let bad = "credentials:
  gh: {source: github_app, installation_id: 2, private_key: {file: bad.pem}, repositories: [\"acme/infra\"]}
  gh2: {source: github_app, app_id: 1, installation_id: 2, private_key: {file: missing.pem}}
  sa: {source: google_service_account, key: {file: sa.json}, subject: \"{user}{uid}\"}
  sa2: {source: google_service_account, key: {file: sa.json}, scopes: [x], token_url: \"https://x\"}
  bot: {source: oauth_client_credentials, token_url: \"https://t.test/token\", client_id: {env: ID}, client_secret: {env: SECRET}, inject: {aws_sigv4: {region: us-east-1, service: bedrock}}}
  key: {source: file, file: k.json, inject: {aws_sigv4: {region: \"US East\", service: bedrock}}}
routes: []
";
    let (code, err) = check(&dir, bad);
    assert_eq!(code, 2, "{err}");
    for (path, what) in [
        ("credentials.gh.app_id", "missing"),
        ("credentials.gh.private_key", "RSA private key"),
        ("credentials.gh.repositories[0]", "owner"),
        ("credentials.gh2.private_key", "cannot read"),
        ("credentials.sa.key", "private_key"),
        ("credentials.sa.scopes", "scope"),
        ("credentials.sa.subject", "{user}"),
        ("credentials.sa2.token_url", "not used"),
        ("credentials.bot.inject.aws_sigv4", "access-key map"),
        ("credentials.key.inject.aws_sigv4.region", "region"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{path}:")) && l.contains(what)),
            "expected `{path}: ...{what}...` in:\n{err}"
        );
    }
    assert!(
        !err.contains("not a key"),
        "a key's content is never quoted"
    );
}
