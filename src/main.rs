//! The `easel` binary: parses the command line and hands over to [`easel::cli`].

fn main() -> std::process::ExitCode {
    easel::cli::main()
}
