//! The `rtconfig` binary: everything lives in the library; see `rtconfig::cli`.

fn main() -> std::process::ExitCode {
    rtconfig::cli::main()
}
