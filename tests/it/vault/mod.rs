//! vault tests (see each file's own doc).
mod approle;
mod client_credentials;
mod no_leak;
mod outage;
mod reads;
mod refresh;
mod retry;
