//! The `lorabert` command-line program.

fn main() -> std::process::ExitCode {
    match lorabert::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
