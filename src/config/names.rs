//! The config's keywords as types: `auth:`, `default:`, credential `source:`, inject
//! forms, `client_auth:` and the MCP words (`action:`, `mcp.default:`, `mcp.pin:`). Each enum is the one spelling of its words: `FromStr`
//! (with the "unknown X `y` (expected a, b or c)" message), `Display`, and `ALL`.
//! Adding a word is adding a variant line here (the compiler then lists every `match`
//! that must learn it).
//!
//! [`Word`] carries such a keyword through the raw serde shapes without failing the
//! parse, so an unknown word is reported by validation with its YAML path, together
//! with every other problem of the file.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A word that is not one of its keyword's spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What the word names (`auth`, `source`, ...).
    pub what: &'static str,
    pub got: String,
    /// The known spellings, e.g. `claw, assistant, deny or passthrough`.
    pub expected: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected {})",
            self.what, self.got, self.expected
        )
    }
}

impl std::error::Error for UnknownName {}

/// `a`, `a or b`, `a, b or c`.
pub(crate) fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [head @ .., last] => format!("{} or {last}", head.join(", ")),
    }
}

macro_rules! keyword {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in the order the docs list them (not every list is
            /// enumerated outside tests).
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word as written in the config.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The known spellings, for messages: `a, b or c`.
            pub fn expected() -> String {
                one_of(&[$($text),+])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        got: s.to_string(),
                        expected: Self::expected(),
                    }),
                }
            }
        }
    };
}

keyword! {
    /// A route's `auth:`: what sidekey does with a call the route matches.
    pub enum Action("auth") {
        /// system_service: a fixed credential shared by every user.
        Claw = "claw",
        /// user_delegated: the end user's own credential.
        Assistant = "assistant",
        Deny = "deny",
        /// Forwarded with no credential.
        Passthrough = "passthrough",
    }
}

impl Action {
    /// The audit record's and metrics' `auth_context`.
    pub fn auth_context(self) -> &'static str {
        match self {
            Action::Claw => "system_service",
            Action::Assistant => "user_delegated",
            Action::Deny | Action::Passthrough => "none",
        }
    }

    /// Whether the action injects a credential (and so its route names one).
    pub fn injects(self) -> bool {
        matches!(self, Action::Claw | Action::Assistant)
    }
}

keyword! {
    /// Top-level `default:`: what happens to a call no route matches.
    pub enum DefaultAction("default") {
        Deny = "deny",
        Passthrough = "passthrough",
        /// Forwarded with no credential, audited as what `deny` would have refused.
        Report = "report",
    }
}

keyword! {
    /// A route's `enforce:`: whether its refusals are enforced or only reported.
    pub enum Enforce("enforce") {
        /// Refusals are answered (the default).
        On = "on",
        /// A call the route would refuse goes out with no credential, audited
        /// `decision: "report"` with the error enforcement would return.
        Report = "report",
    }
}

keyword! {
    /// A credential's `source:`.
    pub enum SourceKind("source") {
        Env = "env",
        File = "file",
        Vault = "vault",
        OAuthClientCredentials = "oauth_client_credentials",
        /// Minted: GitHub App installation tokens.
        GithubApp = "github_app",
        /// Minted: a Google service account's JWT-bearer grant.
        GoogleServiceAccount = "google_service_account",
        /// Minted: RFC 8693 exchange of the identity JWT.
        TokenExchange = "token_exchange",
    }
}

keyword! {
    /// The forms of `inject:` (each is the key that selects it).
    pub enum InjectForm("inject form") {
        /// `inject: {header: NAME, format: "...{token}..."}`
        Header = "header",
        /// `inject: {basic: {username: U}}`
        Basic = "basic",
        /// `inject: {query: PARAM}`
        Query = "query",
        /// `inject: {aws_sigv4: {region, service}}`
        AwsSigV4 = "aws_sigv4",
    }
}

keyword! {
    /// How an OAuth client authenticates to its token endpoint.
    pub enum ClientAuth("client_auth") {
        /// client_secret_basic (HTTP Basic).
        Basic = "basic",
        /// client_secret_post (in the form body): the contract's spelling.
        Post = "post",
        /// The older spelling of `post`.
        Body = "body",
    }
}

keyword! {
    /// An MCP tool rule's `action:` (see [`crate::mcp`]).
    #[derive(Default)]
    pub enum ToolAction("action") {
        #[default]
        Allow = "allow",
        Deny = "deny",
    }
}

keyword! {
    /// An MCP route's `mcp.default:`: the decision for a `tools/call` no rule applies to.
    #[derive(Default)]
    pub enum ToolDefault("default") {
        #[default]
        Deny = "deny",
        Allow = "allow",
    }
}

keyword! {
    /// The word forms of an MCP route's `mcp.pin:` (the third form is `{file: PATH}`).
    pub enum PinWord("pin mode") {
        Off = "off",
        Tofu = "tofu",
    }
}

/// A keyword as written (`auth: claw`): the text, and the parsed value or why it is
/// not one. Deserialising never fails on an unknown word; validation reports it.
#[derive(Debug, Clone)]
pub struct Word<T> {
    pub text: String,
    pub parsed: Result<T, UnknownName>,
}

impl<'de, T: FromStr<Err = UnknownName>> Deserialize<'de> for Word<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = text.parse();
        Ok(Word { text, parsed })
    }
}

impl<T> fmt::Display for Word<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_and_unknowns_name_the_choices() {
        for a in Action::ALL {
            assert_eq!(a.to_string().parse::<Action>(), Ok(*a));
        }
        for s in SourceKind::ALL {
            assert_eq!(s.as_str().parse::<SourceKind>(), Ok(*s));
        }
        let e = "clow".parse::<Action>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown auth `clow` (expected claw, assistant, deny or passthrough)"
        );
        assert_eq!(one_of(&["a", "b"]), "a or b");
    }
}
