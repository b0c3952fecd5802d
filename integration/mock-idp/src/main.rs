//! `mock-idp --port N [--issuer URL] [--config FILE.json]`
//!
//! Runs the mock IdP until killed (SIGTERM or ctrl-c end the process).
//! Without `--config` it serves the demo setup: public client
//! `finport-app`, confidential client `agent-broker`, users alice and bob.

use std::process::ExitCode;

use mock_idp::{MockIdp, MockIdpConfig};

const USAGE: &str = "usage: mock-idp [--port N] [--issuer URL] [--config FILE.json]";

fn parse_args(args: &[String]) -> Result<MockIdpConfig, String> {
    let mut config = MockIdpConfig::default();
    let mut port = None;
    let mut issuer = None;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = Some(value()?.parse::<u16>().map_err(|e| format!("--port: {e}"))?),
            "--issuer" => issuer = Some(value()?.clone()),
            "--config" => {
                let path = value()?;
                let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                config = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    // Flags win over the file, whatever their order.
    if let Some(port) = port {
        config.port = port;
    }
    if issuer.is_some() {
        config.issuer = issuer;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_args(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let idp = match MockIdp::start(config) {
        Ok(idp) => idp,
        Err(error) => {
            eprintln!("mock-idp: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock-idp listening on {} issuer={}", idp.base_url(), idp.issuer());
    loop {
        std::thread::park();
    }
}
