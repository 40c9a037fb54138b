//! Policy you can reason about and roll out safely (issue 16): `sidekey explain` and
//! its agreement with the running proxy (`explain`), report mode (`report`), rate
//! limits and upstream back-off (`rate`), credential quarantine after `invalid_grant`
//! against a real OpenBao (`quarantine`), and `rate:` in `sidekey check` (`rate_check`).

mod explain;
mod quarantine;
mod rate;
mod rate_check;
mod report;

use crate::support::*;

/// One sample of the running sidekey's `/metrics` (0 when the series does not exist).
pub async fn metric(sk: &Sidekey, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = http_get(sk.admin_addr, "/metrics").await.text();
    crate::prom::parse(&text).get(name, labels).unwrap_or(0.0)
}
