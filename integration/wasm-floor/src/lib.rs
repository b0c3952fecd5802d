//! The floor under every wasm filter, for `make bench`: a proxy-wasm HTTP
//! filter that does nothing but the host calls its configuration names.
//! Its plugin configuration is a JSON string:
//! - `"empty"`: returns `Continue` from the request headers callback;
//! - `"swap-credential"`: reads `authorization` and replaces it, the least
//!   a credential-injecting filter can do.
//! - `"cached-decision"`: the least a cached decision can do, with the
//!   host calls of claim-enforcement's and obo-credential-injection's: read
//!   the header map and the clock (a cached token's expiry), find the
//!   bearer token in a map of tokens seen (std `HashMap`), set one header;
//! - `"a2a-stored-token"`: the least in-task-auth-code can do for a message
//!   whose task has a stored token: read the header map, the clock and the
//!   whole message, look the task up in shared data, set the credential, and
//!   read the agent's whole answer (the filter learns the task's state and
//!   id from it).
// Only the wasm build is a filter; natively the crate is empty.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Empty,
    SwapCredential,
    CachedDecision,
    A2aStoredToken,
}

/// A task record the size of in-task-auth-code's, so the shared-data read
/// copies what the filter's does.
const TASK_KEY: &str = "wasm-floor/task";
const TASK_RECORD: &[u8] = &[b'x'; 1400];

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot { mode: Mode::Empty, seen: Rc::default() }) });
}}

/// Tokens seen, with the header value each gets (a cached decision).
type Seen = Rc<RefCell<HashMap<String, String>>>;

struct FloorRoot {
    mode: Mode,
    seen: Seen,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.mode = match config.as_slice() {
            b"\"empty\"" => Mode::Empty,
            b"\"swap-credential\"" => Mode::SwapCredential,
            b"\"cached-decision\"" => Mode::CachedDecision,
            b"\"a2a-stored-token\"" => Mode::A2aStoredToken,
            _ => return false,
        };
        if let Mode::A2aStoredToken = self.mode {
            if self.set_shared_data(TASK_KEY, Some(TASK_RECORD), None).is_err() {
                return false;
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorHttp { mode: self.mode, seen: Rc::clone(&self.seen) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct FloorHttp {
    mode: Mode,
    seen: Seen,
}

impl Context for FloorHttp {}

impl HttpContext for FloorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.mode {
            Mode::Empty => {}
            Mode::SwapCredential => {
                if self.get_http_request_header_bytes("authorization").is_some() {
                    self.set_http_request_header("authorization", Some("Bearer floor"));
                }
            }
            Mode::CachedDecision => {
                let headers = self.get_http_request_headers_bytes();
                let _ = self.get_current_time();
                let token = headers.iter().find(|(name, _)| name == "authorization").map(|(_, value)| value);
                if let Some(token) = token.and_then(|value| std::str::from_utf8(value).ok()) {
                    let mut seen = self.seen.borrow_mut();
                    if !seen.contains_key(token) {
                        seen.insert(token.to_string(), "Bearer floor".to_string());
                    }
                    if let Some(value) = seen.get(token) {
                        self.set_http_request_header("authorization", Some(value));
                    }
                }
            }
            Mode::A2aStoredToken => {
                let _ = self.get_http_request_headers_bytes();
                let _ = self.get_current_time();
                if !end_of_stream {
                    return Action::Pause;
                }
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.mode, Mode::A2aStoredToken) {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = self.get_http_request_body(0, body_size);
        let _ = self.get_shared_data(TASK_KEY);
        self.set_http_request_header("authorization", Some("Bearer floor"));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if matches!(self.mode, Mode::A2aStoredToken) && !end_of_stream {
            let _ = self.get_http_response_headers_bytes();
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.mode, Mode::A2aStoredToken) {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = self.get_http_response_body(0, body_size);
        Action::Continue
    }
}
