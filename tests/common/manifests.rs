//! Every YAML document under `deploy/`, for the tests of the deployment
//! manifests (`deploy.rs`, `deploy_schemas.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use baton_harness::workspace_root;
use serde::Deserialize;
use serde_json::Value;

/// One YAML document under `deploy/`.
#[derive(Debug)]
pub struct Manifest {
    /// Relative to `deploy/`.
    pub file: String,
    /// Its place among the documents of its file, from 0.
    pub index: usize,
    pub doc: Value,
}

impl Manifest {
    /// Its `apiVersion` and `kind` ("" where missing).
    pub fn kind(&self) -> (&str, &str) {
        (self.doc["apiVersion"].as_str().unwrap_or(""), self.doc["kind"].as_str().unwrap_or(""))
    }

    /// `file#index`: names the document in messages.
    #[allow(dead_code)] // deploy_schemas.rs only
    pub fn name(&self) -> String {
        format!("{}#{}", self.file, self.index)
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            out.push(path);
        }
    }
}

/// Every non-empty YAML document under `deploy/`, in file order.
pub fn manifests() -> Vec<Manifest> {
    let deploy = workspace_root().join("deploy");
    let mut files = Vec::new();
    yaml_files(&deploy, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = path.strip_prefix(&deploy).unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let mut index = 0;
        for document in serde_norway::Deserializer::from_str(&text) {
            let doc = Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !doc.is_null() {
                out.push(Manifest { file: file.clone(), index, doc });
                index += 1;
            }
        }
    }
    assert_eq!(out.len(), 33, "manifests (YAML documents) under deploy/");
    out
}
