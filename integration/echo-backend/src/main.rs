//! `echo-backend [--port N] [--a2a] [--portfolio]`: runs the echo server
//! until killed. `--a2a` answers as the demo's A2A Transfer Agent on every
//! path; `--portfolio` serves the demo's Portfolio Agent on
//! `/portfolio/holdings` (everything else is echoed).

use std::process::ExitCode;

use echo_backend::{EchoBackend, a2a_agent, portfolio};

const USAGE: &str = "usage: echo-backend [--port N] [--a2a] [--portfolio]";

#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    port: u16,
    a2a: bool,
    portfolio: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--port" => {
                let value = iter.next().ok_or(USAGE)?;
                options.port = value.parse().map_err(|e| format!("--port: {e}"))?;
            }
            "--a2a" => options.a2a = true,
            "--portfolio" => options.portfolio = true,
            _ => return Err(USAGE.to_string()),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let backend = match EchoBackend::start_on(options.port) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("echo-backend: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    if options.a2a {
        backend.with_handler("/", a2a_agent::reply);
    }
    if options.portfolio {
        backend.with_handler("/portfolio/holdings", portfolio::reply);
    }
    println!("echo-backend listening on {}", backend.base_url());
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&args(&[])), Ok(Options::default()));
        assert_eq!(
            parse_args(&args(&["--port", "9011", "--a2a"])),
            Ok(Options { port: 9011, a2a: true, portfolio: false })
        );
        assert_eq!(parse_args(&args(&["--portfolio"])).map(|o| o.portfolio), Ok(true));
        assert!(parse_args(&args(&["--port"])).is_err());
        assert!(parse_args(&args(&["--nope"])).is_err());
    }
}
