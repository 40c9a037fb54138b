//! The `sidekey` binary: all of it lives in the library; see `sidekey::cli`.

fn main() -> std::process::ExitCode {
    sidekey::cli::main()
}
