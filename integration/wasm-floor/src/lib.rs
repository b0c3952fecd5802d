//! The floor under every wasm filter, for `make bench`: a proxy-wasm HTTP
//! filter that does nothing but the host calls its configuration names.
//! Its plugin configuration is a JSON string:
//! - `"empty"`: returns `Continue` from the request headers callback;
//! - `"swap-credential"`: reads `authorization` and replaces it, the least
//!   a credential-injecting filter can do.
// Only the wasm build is a filter; natively the crate is empty.
#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Empty,
    SwapCredential,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot { mode: Mode::Empty }) });
}}

struct FloorRoot {
    mode: Mode,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.mode = match config.as_slice() {
            b"\"empty\"" => Mode::Empty,
            b"\"swap-credential\"" => Mode::SwapCredential,
            _ => return false,
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorHttp { mode: self.mode }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct FloorHttp {
    mode: Mode,
}

impl Context for FloorHttp {}

impl HttpContext for FloorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.mode {
            Mode::Empty => {}
            Mode::SwapCredential => {
                if self.get_http_request_header_bytes("authorization").is_some() {
                    self.set_http_request_header("authorization", Some("Bearer floor"));
                }
            }
        }
        Action::Continue
    }
}
