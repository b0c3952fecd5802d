//! What every filter does the same way at start: read and compile its
//! configuration (one log line naming the field when it is bad), and
//! register its root context with a panic hook.

use std::fmt::Display;

use proxy_wasm::hostcalls;
use proxy_wasm::types::BufferType;

use crate::host::LogLevel;
use crate::proxy_host::log;

/// Reads the plugin configuration and compiles it with `parse`. On any
/// error, logs one line and returns `None`: `on_configure` then returns
/// false and Envoy refuses the listener.
pub fn load_config<T, E: Display>(filter: &str, parse: impl FnOnce(&[u8]) -> Result<T, E>) -> Option<T> {
    let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(Some(bytes)) => bytes,
        _ => {
            log(filter, LogLevel::Error, "invalid configuration: no plugin configuration given");
            return None;
        }
    };
    match parse(&bytes) {
        Ok(config) => Some(config),
        Err(error) => {
            log(filter, LogLevel::Error, &error.to_string());
            None
        }
    }
}

/// Registers a filter's root context (for `wasm32` builds): a panic hook
/// that logs at critical level (with `panic = "abort"` it is the VM's last
/// word), then the root context constructor.
///
/// ```text
/// baton_filter_kit::register_filter!(crate::FILTER, crate::root::MyRoot::new);
/// ```
#[macro_export]
macro_rules! register_filter {
    ($filter:expr, $new_root:expr) => {
        #[cfg(target_arch = "wasm32")]
        mod registration {
            use proxy_wasm::traits::RootContext;

            proxy_wasm::main! {{
                std::panic::set_hook(Box::new(|info| {
                    let _ = proxy_wasm::hostcalls::log(
                        proxy_wasm::types::LogLevel::Critical,
                        &format!("baton {}: panic: {info}", $filter),
                    );
                }));
                proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
                    Box::new($new_root(context_id))
                });
            }}
        }
    };
}
