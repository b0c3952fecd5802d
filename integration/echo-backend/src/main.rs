//! `echo-backend [--port N]`: runs the echo server until killed.

use std::process::ExitCode;

use echo_backend::EchoBackend;

const USAGE: &str = "usage: echo-backend [--port N]";

fn parse_port(args: &[String]) -> Result<u16, String> {
    match args {
        [] => Ok(0),
        [flag, value] if flag == "--port" => value.parse().map_err(|e| format!("--port: {e}")),
        _ => Err(USAGE.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match parse_port(&args) {
        Ok(port) => port,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let backend = match EchoBackend::start_on(port) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("echo-backend: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("echo-backend listening on {}", backend.base_url());
    loop {
        std::thread::park();
    }
}
