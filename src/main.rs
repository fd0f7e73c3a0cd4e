fn main() -> std::process::ExitCode {
    ezforge::cli::main()
}
