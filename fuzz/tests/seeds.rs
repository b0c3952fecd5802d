//! Every seed in `corpus/` through its target's check, on stable Rust
//! (`cd fuzz && cargo test`): the checks hold on the inputs they were
//! written against, the regression inputs included, without libFuzzer.

use std::fs;
use std::path::Path;

/// Runs `check` on each file of `corpus/<target>/`; there must be some.
fn replay(target: &str, check: fn(&[u8])) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut seeds = 0;
    for entry in fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
        let path = entry.expect("a corpus entry").path();
        println!("{}", path.display());
        check(&fs::read(&path).expect("a readable seed"));
        seeds += 1;
    }
    assert!(seeds > 0, "no seeds in {}", folder.display());
}

/// Each target (`fuzz_targets/<name>.rs`, seeds in `corpus/<name>/`) and
/// the check it calls.
/// A target's check.
type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 10] = [
    ("a2a_message", baton_fuzz::a2a_message::check),
    ("claim_rules", baton_fuzz::claim_rules::check),
    ("config_claim_enforcement", baton_fuzz::config::claim_enforcement::check),
    ("config_obo_credential_injection", baton_fuzz::config::obo_credential_injection::check),
    ("config_in_task_auth_code", baton_fuzz::config::in_task_auth_code::check),
    ("form", baton_fuzz::form::check),
    ("sse", baton_fuzz::sse::check),
    ("jwt_parse", baton_fuzz::jwt_parse::check),
    ("token_response", baton_fuzz::token_response::check),
    ("www_authenticate", baton_fuzz::www_authenticate::check),
];

#[test]
fn every_seed_passes_its_targets_check() {
    for (target, check) in TARGETS {
        replay(target, check);
    }
}
