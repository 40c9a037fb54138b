//! `source: env`: a fixed secret from the process environment: the value, trimmed, or
//! a JSON secret map (like a file's, e.g. an AWS access-key map for SigV4).

use super::{CredError, Token};

pub fn fetch(var: &str) -> Result<Token, CredError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => super::file::parse(&v),
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            tracing::warn!(env = var, "credential environment variable is not set");
            Err(CredError::Missing)
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(CredError::Invalid(format!(
            "environment variable {var} is not UTF-8"
        ))),
    }
}
