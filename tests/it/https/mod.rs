//! https tests (see each file's own doc).
mod clients;
mod policy;
mod streams;
