//! `make oci`: one Wasm OCI image layout per filter under `target/oci/<image>/`,
//! from the modules `make build` wrote, shrunk with `wasm-opt -Oz` when it
//! is installed. Push one with
//! `oras cp --from-oci-layout target/oci/claim-enforcement:0.1.0 ghcr.io/<owner>/claim-enforcement:0.1.0`.
//!
//! ```text
//! baton-oci [--out DIR] [--wasm-dir DIR] [--version TAG] [--no-wasm-opt]
//! ```
//!
//! The creation time is `SOURCE_DATE_EPOCH` (the Makefile passes the last
//! commit's time), else the Unix epoch, so a build is reproducible.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use baton_oci::{FILTERS, Filter, OciError, WasmImage, optimize, write_layout};

#[derive(Debug)]
struct Options {
    out: PathBuf,
    wasm_dir: PathBuf,
    version: String,
    wasm_opt: bool,
    created_unix_secs: u64,
}

fn options(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        out: PathBuf::from("target/oci"),
        wasm_dir: PathBuf::from("target/wasm32-wasip1/release"),
        version: env!("CARGO_PKG_VERSION").to_string(),
        wasm_opt: true,
        created_unix_secs: match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(value) => {
                value.trim().parse().map_err(|_| format!("SOURCE_DATE_EPOCH={value:?} is not a Unix time"))?
            }
            Err(_) => 0,
        },
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => options.out = PathBuf::from(value()?),
            "--wasm-dir" => options.wasm_dir = PathBuf::from(value()?),
            "--version" => options.version = value()?,
            "--no-wasm-opt" => options.wasm_opt = false,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: baton-oci [--out DIR] [--wasm-dir DIR] [--version TAG] [--no-wasm-opt]"
                ));
            }
        }
    }
    Ok(options)
}

/// The module to ship: wasm-opt's output when asked for and installed.
fn shipped_module(options: &Options, filter: Filter) -> Result<(Vec<u8>, &'static str), OciError> {
    let built = options.wasm_dir.join(format!("{}.wasm", filter.module));
    let read = |path: &PathBuf| {
        fs::read(path).map_err(|error| OciError::Io { path: path.clone(), message: error.to_string() })
    };
    if options.wasm_opt {
        let optimized = options.out.join(format!("{}.oz.wasm", filter.module));
        fs::create_dir_all(&options.out)
            .map_err(|error| OciError::Io { path: options.out.clone(), message: error.to_string() })?;
        if optimize(&built, &optimized)? {
            let module = read(&optimized);
            let _ = fs::remove_file(&optimized);
            return Ok((module?, "wasm-opt -Oz"));
        }
    }
    Ok((read(&built)?, "as built"))
}

fn run(options: &Options) -> Result<(), OciError> {
    for filter in FILTERS {
        let (module, form) = shipped_module(options, filter)?;
        let dir = options.out.join(filter.image);
        let image = WasmImage {
            filter,
            version: &options.version,
            created_unix_secs: options.created_unix_secs,
            module: &module,
        };
        let layout = write_layout(&dir, &image)?;
        println!("{}:{}  {}", dir.display(), options.version, layout.manifest.digest);
        println!("    module {} bytes ({form}), sha256 {}", layout.module.size, layout.module.hex());
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = options(std::env::args().skip(1))
        .and_then(|options| run(&options).map_err(|error| error.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("baton-oci: {message}");
            ExitCode::FAILURE
        }
    }
}
