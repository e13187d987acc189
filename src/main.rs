//! `vajra-peer`: the one binary. All logic lives in the `vajra` library.

fn main() -> std::process::ExitCode {
    vajra::cli::main_with(vajra::engine::TaskRegistry::with_builtins())
}
