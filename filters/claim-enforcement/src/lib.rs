//! Baton claim-enforcement: validates the bearer JWT of each request inside
//! Envoy and enforces per-route scope, claim and step-up rules.
//!
//! Layout: `config` compiles the plugin configuration; `decision` holds the
//! per-request logic over the [`host::Host`] trait; `keys` and `cache` keep
//! key sets and verified tokens shared across workers; `root` and `http` are
//! the proxy-wasm glue, `wasm_host` the host calls behind [`host::Host`].

pub mod audit;
pub mod cache;
pub mod config;
pub mod decision;
pub mod host;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod root;
pub mod routes;
pub mod wasm_host;

#[cfg(test)]
mod test_host;
#[cfg(test)]
mod test_keys;

#[cfg(target_arch = "wasm32")]
mod registration {
    use proxy_wasm::traits::RootContext;

    proxy_wasm::main! {{
        std::panic::set_hook(Box::new(|info| {
            // With panic = "abort" this is the last word of the VM: make it
            // visible to the operator.
            let _ = proxy_wasm::hostcalls::log(
                proxy_wasm::types::LogLevel::Critical,
                &format!("baton claim-enforcement: panic: {info}"),
            );
        }));
        proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
            Box::new(crate::root::ClaimEnforcementRoot::new(context_id))
        });
    }}
}
