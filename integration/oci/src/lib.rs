//! Wasm OCI image layouts for the filters, written without Docker: the
//! directory form of an image (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) that `oras cp --from-oci-layout`, `crane` or `skopeo`
//! push to a registry, where Istio's `WasmPlugin` and Envoy Gateway's
//! `EnvoyExtensionPolicy` pull it.
//!
//! The image is the Wasm artifact format both of them read (Istio
//! `pkg/wasm/imagefetcher.go`, copied by Envoy Gateway as
//! `internal/wasm/imagefetcher.go`): an OCI image manifest whose config is
//! a small JSON document of media type [`CONFIG_MEDIA_TYPE`], and exactly
//! two layers, that same document and the module itself, raw (not tarred),
//! of media type [`WASM_LAYER_MEDIA_TYPE`]. Both fetchers refuse an image
//! whose only layer is the raw module: they read a raw module only from a
//! two-layer image, and a one-layer image only as a `tar+gzip` holding
//! `plugin.wasm`.
//!
//! Everything written is a function of the module, the version and the
//! creation time, so the same build gives the same digests.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `index.json`.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The image config, also the first layer (the runtime configuration).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// The module, raw.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The tag of the image in `index.json`, what `oras cp --from-oci-layout DIR:TAG` names.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The first bytes of every Wasm module.
pub const WASM_MAGIC: [u8; 4] = *b"\0asm";
/// The proxy-wasm ABI the filters export (`proxy_abi_version_0_2_1`).
pub const PROXY_WASM_ABI: &str = "proxy_abi_version_0_2_1";
/// `wasm-opt` arguments: smallest code, with the features rustc's
/// `wasm32-wasip1` output uses (binaryen refuses them unless enabled).
pub const WASM_OPT_ARGS: [&str; 7] = [
    "-Oz",
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// One filter: its image name and the module `make build` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Image (repository) name, e.g. `claim-enforcement`.
    pub image: &'static str,
    /// Module file stem and root id, e.g. `claim_enforcement`.
    pub module: &'static str,
}

/// Every module, in the order `make build` lists them (the last runs the
/// first two in one pass).
pub const FILTERS: [Filter; 4] = [
    Filter { image: "claim-enforcement", module: "claim_enforcement" },
    Filter { image: "obo-credential-injection", module: "obo_credential_injection" },
    Filter { image: "in-task-auth-code", module: "in_task_auth_code" },
    Filter { image: "enforce-and-exchange", module: "enforce_and_exchange" },
];

/// What goes into one image.
#[derive(Debug, Clone, Copy)]
pub struct WasmImage<'a> {
    /// Which filter.
    pub filter: Filter,
    /// Tag, e.g. `0.1.0`.
    pub version: &'a str,
    /// Creation time (Unix seconds), e.g. from `SOURCE_DATE_EPOCH`.
    pub created_unix_secs: u64,
    /// The module as shipped.
    pub module: &'a [u8],
}

/// A content descriptor: what a manifest or index says of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type.
    pub media_type: &'static str,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

impl Descriptor {
    fn of(media_type: &'static str, bytes: &[u8]) -> Self {
        Self { media_type, digest: digest(bytes), size: bytes.len() as u64 }
    }

    /// The hex part of the digest: the file name under `blobs/sha256/`,
    /// and for the module the `sha256` an HTTP source is checked against.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    fn to_json(&self, annotations: Option<Value>) -> Value {
        let mut value = json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size});
        if let Some(annotations) = annotations {
            value["annotations"] = annotations;
        }
        value
    }
}

/// What [`write_layout`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The manifest, as `index.json` names it.
    pub manifest: Descriptor,
    /// The config blob (also the first layer).
    pub config: Descriptor,
    /// The module layer.
    pub module: Descriptor,
}

/// Why an image could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum OciError {
    /// The module does not start with the Wasm magic `\0asm`.
    NotWasm {
        /// Which filter.
        image: &'static str,
    },
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        message: String,
    },
    /// `wasm-opt` is installed but failed.
    WasmOpt {
        /// The module given to it.
        path: PathBuf,
        /// Its error output.
        message: String,
    },
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotWasm { image } => write!(f, "{image}: the module does not start with \\0asm"),
            Self::Io { path, message } => write!(f, "{}: {message}", path.display()),
            Self::WasmOpt { path, message } => write!(f, "wasm-opt {}: {message}", path.display()),
        }
    }
}

impl std::error::Error for OciError {}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |error| OciError::Io { path: path.to_path_buf(), message: error.to_string() }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The config blob: when and for what the module was built, and the
/// runtime configuration of the Wasm artifact format (`type`,
/// `abiVersions`, `config.root_ids`).
fn config_json(image: &WasmImage<'_>) -> Value {
    json!({
        "created": baton_token::clock::rfc3339(image.created_unix_secs),
        "architecture": "wasm",
        "os": "wasip1",
        "type": "envoy_proxy",
        "abiVersions": [PROXY_WASM_ABI],
        "config": {"root_ids": [image.filter.module]},
    })
}

fn manifest_json(image: &WasmImage<'_>, config: &Descriptor, module: &Descriptor) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.to_json(None),
        "layers": [
            config.to_json(Some(json!({TITLE_ANNOTATION: "runtime-config.json"}))),
            module.to_json(Some(json!({TITLE_ANNOTATION: "plugin.wasm"}))),
        ],
        "annotations": {
            "org.opencontainers.image.created": baton_token::clock::rfc3339(image.created_unix_secs),
            "org.opencontainers.image.title": image.filter.image,
            "org.opencontainers.image.version": image.version,
            "org.opencontainers.image.source": env!("CARGO_PKG_REPOSITORY"),
            "org.opencontainers.image.licenses": env!("CARGO_PKG_LICENSE"),
        },
    })
}

/// Writes the image layout of `image` into `dir` (created if missing; an
/// earlier layout's `blobs/` there is replaced).
pub fn write_layout(dir: &Path, image: &WasmImage<'_>) -> Result<Layout, OciError> {
    if !image.module.starts_with(&WASM_MAGIC) {
        return Err(OciError::NotWasm { image: image.filter.image });
    }
    let config_bytes = config_json(image).to_string().into_bytes();
    let config = Descriptor::of(CONFIG_MEDIA_TYPE, &config_bytes);
    let module = Descriptor::of(WASM_LAYER_MEDIA_TYPE, image.module);
    let manifest_bytes = manifest_json(image, &config, &module).to_string().into_bytes();
    let manifest = Descriptor::of(MANIFEST_MEDIA_TYPE, &manifest_bytes);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest.to_json(Some(json!({REF_NAME_ANNOTATION: image.version})))],
    });

    let blobs = dir.join("blobs");
    match fs::remove_dir_all(&blobs) {
        Err(error) if error.kind() != ErrorKind::NotFound => return Err(io_error(&blobs)(error)),
        _ => {}
    }
    let sha256 = blobs.join("sha256");
    fs::create_dir_all(&sha256).map_err(io_error(&sha256))?;
    for (descriptor, bytes) in
        [(&config, config_bytes.as_slice()), (&module, image.module), (&manifest, manifest_bytes.as_slice())]
    {
        let path = sha256.join(descriptor.hex());
        fs::write(&path, bytes).map_err(io_error(&path))?;
    }
    let layout_file = dir.join("oci-layout");
    fs::write(&layout_file, json!({"imageLayoutVersion": "1.0.0"}).to_string())
        .map_err(io_error(&layout_file))?;
    let index_file = dir.join("index.json");
    fs::write(&index_file, index.to_string()).map_err(io_error(&index_file))?;
    Ok(Layout { manifest, config, module })
}

/// Runs `wasm-opt` ([`WASM_OPT_ARGS`]) on `input`, writing `output`.
/// `Ok(false)` when wasm-opt is not installed (nothing written).
pub fn optimize(input: &Path, output: &Path) -> Result<bool, OciError> {
    match Command::new("wasm-opt").args(WASM_OPT_ARGS).arg(input).arg("-o").arg(output).output() {
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(OciError::WasmOpt { path: input.to_path_buf(), message: error.to_string() }),
        Ok(run) if run.status.success() => Ok(true),
        Ok(run) => Err(OciError::WasmOpt {
            path: input.to_path_buf(),
            message: String::from_utf8_lossy(&run.stderr).trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(baton_token::clock::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(baton_token::clock::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(baton_token::clock::rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(baton_token::clock::rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(baton_token::clock::rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn a_module_without_the_wasm_magic_is_refused() {
        let image =
            WasmImage { filter: FILTERS[0], version: "0.1.0", created_unix_secs: 0, module: b"MZ\x90\x00" };
        let dir = std::env::temp_dir().join(format!("baton-oci-refused-{}", std::process::id()));
        let error = write_layout(&dir, &image).unwrap_err();
        assert!(matches!(error, OciError::NotWasm { image: "claim-enforcement" }), "{error}");
        assert!(!dir.exists(), "nothing written");
    }

    #[test]
    fn the_same_input_gives_the_same_digests() {
        let module = b"\0asm\x01\0\0\0";
        let image = WasmImage { filter: FILTERS[1], version: "0.1.0", created_unix_secs: 1, module };
        let base = std::env::temp_dir().join(format!("baton-oci-repeat-{}", std::process::id()));
        let first = write_layout(&base.join("a"), &image).unwrap();
        let second = write_layout(&base.join("b"), &image).unwrap();
        assert_eq!(first, second);
        let later = write_layout(&base.join("c"), &WasmImage { created_unix_secs: 2, ..image }).unwrap();
        assert_ne!(later.manifest, first.manifest, "the creation time is part of the image");
        assert_eq!(later.module, first.module);
        fs::remove_dir_all(&base).unwrap();
    }
}
