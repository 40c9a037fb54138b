//! `source: env`: a fixed secret from the process environment.

use super::{CredError, Token};

pub fn fetch(var: &str) -> Result<Token, CredError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Token::bare(v.trim().to_string())),
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            tracing::warn!(env = var, "credential environment variable is not set");
            Err(CredError::Missing)
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(CredError::Invalid(format!(
            "environment variable {var} is not UTF-8"
        ))),
    }
}
