//! `source: file`: a secret in a file, optionally one file per user (`{user}`).
//!
//! The whole content, trailing whitespace trimmed, is the token. A file whose content
//! is a JSON object with `access_token` (or an AWS `access_key_id`) is read as a secret
//! map instead, so a file can carry `expires_at` like a Vault secret.

use std::path::Path;

use super::{CredError, Token, template};

pub async fn fetch(template_path: &Path, user: Option<&str>) -> Result<Token, CredError> {
    let template = template_path.to_string_lossy();
    let Some(path) = template::fill(&template, user) else {
        return Err(CredError::Missing);
    };
    let content = match tokio::fs::read_to_string(&path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CredError::Missing),
        Err(e) => {
            tracing::warn!(path = %path, error = %e, "cannot read credential file");
            return Err(CredError::Unavailable(format!(
                "cannot read credential file: {}",
                e.kind()
            )));
        }
    };
    parse(&content)
}

/// A secret's text: a JSON secret map (token or AWS key map) or, else, the token
/// itself, trimmed (also used for `source: env` values).
pub(super) fn parse(content: &str) -> Result<Token, CredError> {
    let trimmed = content.trim();
    if trimmed.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(trimmed)
        && super::token::is_secret_map(&map)
    {
        return Token::from_map(&map).map_err(CredError::Invalid);
    }
    if trimmed.is_empty() {
        return Err(CredError::Missing);
    }
    Ok(Token::bare(trimmed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn per_user_files_and_json_maps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice.txt"), "tok-a\n").unwrap();
        std::fs::write(dir.path().join("bob.json"), r#"{"access_token":"tok-b"}"#).unwrap();
        let t = dir.path().join("{user}.txt");
        let a = fetch(&t, Some("alice")).await.unwrap();
        assert_eq!(a.access_token.expose_secret(), "tok-a");
        assert!(matches!(
            fetch(&t, Some("bob")).await,
            Err(CredError::Missing)
        ));
        assert!(matches!(
            fetch(&t, Some("../alice")).await,
            Err(CredError::Missing)
        ));
        let j = dir.path().join("{user}.json");
        let b = fetch(&j, Some("bob")).await.unwrap();
        assert_eq!(b.access_token.expose_secret(), "tok-b");
    }
}
