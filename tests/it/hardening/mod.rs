//! hardening tests (see each file's own doc).
mod egress;
mod leaks;
mod protocol;
mod regressions;
