//! ops tests (see each file's own doc).
mod lifecycle;
mod metrics;
