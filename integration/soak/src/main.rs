//! `make soak`: bounded load runs, each with one part of the system
//! flapping, that check invariants rather than speed:
//! - [`idp_flaps`]: claim-enforcement -> obo-credential-injection in one
//!   Envoy while the IdP's token endpoint flaps;
//! - [`store_flaps`]: the same chain on three Envoy replicas behind a
//!   round-robin balancer, sharing exchanged tokens through a real etcd
//!   that is killed and frozen in turn.
//!
//! Prints the figures of each; exits 1 when an invariant fails.

mod idp_flaps;
mod load;
mod store_flaps;

use std::process::ExitCode;

const USAGE: &str =
    "usage: baton-soak [--seconds N] [--clients N] [--users N] [--flap-seconds N] [--only idp|store]";

/// What to run, and how hard.
#[derive(Debug)]
pub struct Options {
    /// Seconds of load in each variant.
    pub seconds: u64,
    /// Client threads.
    pub clients: usize,
    /// Distinct users (more than the caches hold).
    pub users: usize,
    /// Seconds between flips of the flapping part.
    pub flap_seconds: u64,
    /// Only this variant (`idp` or `store`); both when `None`.
    pub only: Option<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options { seconds: 60, clients: 8, users: 3000, flap_seconds: 3, only: None };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let value = args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
            if arg == "--only" {
                if value != "idp" && value != "store" {
                    return Err(format!("--only is idp or store\n{USAGE}"));
                }
                options.only = Some(value);
                continue;
            }
            let value: u64 = value.parse().map_err(|_| format!("{arg} needs a number\n{USAGE}"))?;
            match arg.as_str() {
                "--seconds" => options.seconds = value,
                "--clients" => options.clients = value as usize,
                "--users" => options.users = value as usize,
                "--flap-seconds" => options.flap_seconds = value,
                _ => return Err(USAGE.to_string()),
            }
        }
        if options.seconds == 0 || options.clients == 0 || options.users == 0 || options.flap_seconds == 0 {
            return Err(format!("every value must be at least 1\n{USAGE}"));
        }
        Ok(options)
    }

    fn runs(&self, variant: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == variant)
    }
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut all = true;
    for (variant, run) in
        [("idp", idp_flaps::run as fn(&Options) -> Result<bool, String>), ("store", store_flaps::run)]
    {
        if !options.runs(variant) {
            continue;
        }
        match run(&options) {
            Ok(passed) => all &= passed,
            Err(error) => {
                eprintln!("soak ({variant}) failed: {error}");
                return ExitCode::FAILURE;
            }
        }
        println!();
    }
    if all { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
