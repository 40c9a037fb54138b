//! The identity header on arbitrary input.
//!
//! * `identity::valid_user` never panics, and what it accepts is at most
//!   `MAX_USER_LEN` bytes with no control character;
//! * `Identifier::identify` in trusted mode (loopback peer) on an arbitrary set of
//!   header lines never panics; when it names a user, every identity header line
//!   carried that same value (differing duplicates are refused) and the user passes
//!   `valid_user`;
//! * in JWT mode (a local JWKS with one ES256 key, issuer and audience set) the same
//!   header lines, and an arbitrary token alone, never panic and are never accepted:
//!   the fuzzer cannot sign, so any accepted identity is a forgery; a refusal never
//!   quotes the token;
//! * `proxy::headers::strip_identity` leaves no header whose name equals the identity
//!   header up to case and `_`/`-`.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sidekey::identity::{Identifier, MAX_USER_LEN, valid_user};

const TRUSTED: &str =
    "version: 1\nagent: fuzz\nidentity:\n  header: x-sidekey-user\n  mode: trusted\nroutes: []\n";

/// RFC 7517 appendix A.1's P-256 public key.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig","alg":"ES256","kid":"1"}]}"#;

struct Fixture {
    rt: tokio::runtime::Runtime,
    trusted: Identifier,
    jwt: Identifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let jwks = std::env::temp_dir().join(format!("sidekey-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&jwks, JWKS).unwrap();
        let jwt_yaml = format!(
            "version: 1\nagent: fuzz\nidentity:\n  header: x-sidekey-user\n  mode: jwt\n  jwt:\n    jwks_file: {:?}\n    issuer: https://idp.test\n    audiences: [sidekey]\n    algorithms: [ES256, RS256, EdDSA]\nroutes: []\n",
            jwks.to_str().unwrap()
        );
        let build = |yaml: &str| {
            let cfg = sidekey::config::from_str(yaml, Path::new("f.yaml"), Path::new("/tmp"))
                .unwrap_or_else(|e| panic!("fixture config invalid: {e:?}"));
            rt.block_on(Identifier::new(&cfg.identity, &cfg.upstream_roots))
                .expect("identifier")
        };
        let trusted = build(TRUSTED);
        let jwt = build(&jwt_yaml);
        Fixture { rt, trusted, jwt }
    })
}

const NAMES: [&str; 8] = [
    "x-sidekey-user",
    "x_sidekey_user",
    "x-sidekey_user",
    "x_sidekey-user",
    "x-sidekey-users",
    "x-sidekey-use",
    "authorization",
    "x-other",
];

#[derive(Arbitrary, Debug)]
struct Line {
    name_pick: u8,
    name: String,
    value: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    user: String,
    token: String,
    /// When set, the token is built JWT-shaped from these parts (JOSE header JSON,
    /// claims JSON, signature bytes), so the fuzzer reaches `alg`/`kid` handling and
    /// signature checks instead of stopping at "malformed".
    jwt_parts: Option<(String, String, Vec<u8>)>,
    bearer: bool,
    lines: Vec<Line>,
}

fn same_up_to_dash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            x.eq_ignore_ascii_case(&y) || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_'))
        })
}

fuzz_target!(|input: Input| {
    let f = fixture();
    if let Ok(u) = valid_user(&input.user) {
        assert!(u.len() <= MAX_USER_LEN);
        assert!(!u.chars().any(char::is_control), "{u:?}");
    }

    let mut headers = HeaderMap::new();
    for l in input.lines.iter().take(64) {
        let name = if l.name_pick < 224 {
            HeaderName::from_static(NAMES[l.name_pick as usize % NAMES.len()])
        } else {
            match HeaderName::from_bytes(l.name.as_bytes()) {
                Ok(n) => n,
                Err(_) => continue,
            }
        };
        let Ok(value) = HeaderValue::from_bytes(&l.value) else {
            continue;
        };
        headers.append(name, value);
    }

    let own = f.trusted.header().clone();
    if let Ok(Some(who)) = f.rt.block_on(f.trusted.identify(&headers, true)) {
        let user: &str = &who.user;
        assert!(valid_user(user).is_ok(), "accepted invalid user {user:?}");
        for v in headers.get_all(&own) {
            assert_eq!(
                v.to_str().map(str::trim).ok(),
                Some(user),
                "identity {user:?} taken while another identity line says {v:?}"
            );
        }
    }

    // JWT: nothing the fuzzer writes is validly signed.
    let jwt_result = f.rt.block_on(f.jwt.identify(&headers, true));
    assert!(
        !matches!(jwt_result, Ok(Some(_))),
        "JWT identity accepted from fuzzer bytes: {jwt_result:?} for {headers:?}"
    );
    let token = match &input.jwt_parts {
        Some((h, c, sig)) => {
            use base64::Engine;
            let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}{}.{}.{}",
                if input.bearer { "Bearer " } else { "" },
                e.encode(h),
                e.encode(c),
                e.encode(sig)
            )
        }
        None => input.token.clone(),
    };
    if let Ok(mut hv) = HeaderValue::from_str(&token) {
        hv.set_sensitive(true);
        let mut h = HeaderMap::new();
        h.insert(own.clone(), hv);
        match f.rt.block_on(f.jwt.identify(&h, true)) {
            Ok(Some(id)) => panic!("forged JWT accepted: {id:?} from {token:?}"),
            Ok(None) => {}
            Err(e) => {
                let msg = e.to_string();
                // A JWT-shaped token (the fixed refusal reasons hold no `.`).
                let t = token.trim();
                assert!(
                    t.len() < 16 || !t.contains('.') || !msg.contains(t),
                    "refusal quotes the token: {msg:?}"
                );
            }
        }
    }

    sidekey::proxy::headers::strip_identity(&mut headers, &own);
    for name in headers.keys() {
        assert!(
            !same_up_to_dash(name.as_str(), own.as_str()),
            "look-alike {name} survived strip_identity"
        );
    }
});
