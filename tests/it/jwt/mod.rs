//! jwt tests (see each file's own doc).
mod allow;
mod openbao;
mod tokens;
