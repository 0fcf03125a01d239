//! The `uorch` binary: the command line lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    uorch::cli::main()
}
