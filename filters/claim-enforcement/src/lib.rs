//! Baton claim-enforcement: validates the bearer JWT of each request inside
//! Envoy and enforces per-route scope, claim and step-up rules.
//!
//! Layout: `config` compiles the plugin configuration; `routes` picks the
//! rule; `decision` holds the per-request logic over the
//! [`baton_filter_kit::Host`] trait (token verification itself is the kit's
//! `TokenVerifier`); `root` and `http` are the proxy-wasm glue.

pub mod config;
pub mod decision;
pub mod http;
pub mod metrics;
pub mod root;
pub mod routes;

/// The name this filter logs under.
pub const FILTER: &str = "claim-enforcement";

#[cfg(target_arch = "wasm32")]
mod registration {
    use proxy_wasm::traits::RootContext;

    proxy_wasm::main! {{
        std::panic::set_hook(Box::new(|info| {
            // With panic = "abort" this is the last word of the VM: make it
            // visible to the operator.
            let _ = proxy_wasm::hostcalls::log(
                proxy_wasm::types::LogLevel::Critical,
                &format!("baton {}: panic: {info}", crate::FILTER),
            );
        }));
        proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
            Box::new(crate::root::ClaimEnforcementRoot::new(context_id))
        });
    }}
}
