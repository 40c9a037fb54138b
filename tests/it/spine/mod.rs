//! spine tests (see each file's own doc).
mod affinity;
mod audit;
mod in_process;
mod injection;
mod lifecycle;
mod policy;
mod streaming;
