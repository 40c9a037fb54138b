//! Human logs through `tracing`: `SIDEKEY_LOG` filter, `SIDEKEY_LOG_FORMAT=json|pretty`
//! (JSON when stdout is not a terminal), written to stderr so stdout stays the audit
//! trail. Log fields never carry a secret: tokens only exist as `SecretString`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("SIDEKEY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // The Vault client's own tracing reports errors that may quote Vault responses, and
    // the SigV4 signer traces the request it signs; sidekey logs those outcomes itself,
    // so these targets stay silent whatever the filter.
    let filter = ["vaultrs=off", "rustify=off", "aws_sigv4=off"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d));
    let json = match std::env::var("SIDEKEY_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("sidekey: logging already initialised: {e}");
    }
}
